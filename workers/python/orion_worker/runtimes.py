"""Inference runtimes: run one ONNX model on the fastest engine the machine has.

- `openvino`: Intel's OpenVINO runtime (PyPI `openvino`). The model is compiled
  for a static input shape with a fixed number of threads; a GPU or NPU is used
  where OpenVINO sees one. It also runs a model's quantized INT8 variant
  (OpenVINO IR, made by `models/quantize.py`).
- `onnxruntime`: ONNX Runtime, with the CUDA provider where the build has it.
- `auto`: whichever of them (and of FP32 and INT8, see `precision`) runs the
  model fastest on this machine, measured at the first start and remembered
  (`runtime_choice`). Which one wins depends on the machine: on one AMD EPYC
  2-core machine ONNX Runtime ran SSDLite 1.6x faster than OpenVINO, on the
  same kind with AVX-512 a week later OpenVINO 1.25x faster than ONNX Runtime.

A runtime works on up to `parallel` inferences at once, each on `threads`
threads (OpenVINO: one stream and one infer request per inference; ONNX
Runtime: concurrent runs of one session), so one worker process keeps
`parallel` cores busy. `run` may be called from that many threads at once.

OpenVINO keeps the compiled model in a cache directory ([`cache_dir`]): a
worker restarted, or started again with the same model, imports it instead of
compiling it (measured: 0.45 s to 0.15 s for SSDLite on an idle 2-core machine;
compiling takes more of a busy one). A cache that cannot be used is skipped.

A model that OpenVINO cannot load or compile is left to ONNX Runtime with one
warning line naming the reason; it never fails the worker for that.
A runtime takes the model's input exactly as the model wants it (static shape,
prepared by the detector) and returns the outputs asked for, in that order.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from . import int8_record
from .logs import one_line, setup_logging
from .runtime_choice import ChoiceStore, Option, choose, time_options

log = logging.getLogger("orion_worker.runtimes")

BACKENDS = ("auto", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "int8")


def cache_root() -> Path | None:
    """Where Orion keeps what it can make again: `$ORION_CACHE_DIR`, else
    systemd's `$CACHE_DIRECTORY` (the service's /var/cache/orion), else
    `$XDG_CACHE_HOME/orion` or `~/.cache/orion`; `None` when none can be made."""
    for base in (os.environ.get("ORION_CACHE_DIR"), os.environ.get("CACHE_DIRECTORY")):
        if base:
            root = Path(base.split(":")[0])
            break
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = os.environ.get("HOME")
        if xdg:
            root = Path(xdg) / "orion"
        elif home:
            root = Path(home) / ".cache" / "orion"
        else:
            return None
    return _writable(root)


def _writable(path: Path) -> Path | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.info("no cache at %s (%s): compiled models and runtime choices are made at every start", path, e)
        return None
    return path if os.access(path, os.W_OK) else None


def cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models (`<cache root>/openvino`)."""
    root = cache_root()
    return _writable(root / "openvino") if root is not None else None


class Runtime(Protocol):
    #: `openvino:CPU`, `onnxruntime:CPUExecutionProvider`, ...
    name: str
    #: The model's output names, in the graph's order.
    output_names: list[str]
    #: Which runtime and precision, and why (set by `open_runtime`).
    choice: str

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]: ...


class OnnxRuntime:
    def __init__(self, path: str, threads: int, parallel: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in preferred if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the model must have one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime:{self.session.get_providers()[0]}"
        self.choice = ""

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        # A session runs concurrent calls, each on its caller's thread and
        # `threads` threads of its own.
        return self.session.run(list(outputs), {self.input_name: tensor})


# Where the kernel shows a GPU or an NPU OpenVINO could use.
DEVICE_NODES = {"GPU": "/dev/dri/renderD*", "NPU": "/dev/accel/accel*"}


def _devices(core) -> set[str]:
    """The devices to try: the CPU, and a GPU or NPU only where the kernel
    shows one. Asking OpenVINO for all its devices loads every plugin (23 MB
    of a worker's memory for the GPU and NPU plugins on a machine with
    neither)."""
    import glob

    present = {"CPU"} | {d for d, pattern in DEVICE_NODES.items() if glob.glob(pattern)}
    return set(core.available_devices) if present != {"CPU"} else present


class OpenVinoRuntime:
    #: Devices tried in this order when present; the CPU is always there.
    DEVICES = ("GPU", "NPU", "CPU")

    def __init__(self, path: str, threads: int, input_shape: Sequence[int], parallel: int = 1, precision: str = "fp32") -> None:
        import openvino as ov

        core = ov.Core()
        cache = cache_dir()
        if cache is not None:
            core.set_property({"CACHE_DIR": str(cache)})
        model = core.read_model(path)
        if len(model.inputs) != 1:
            raise ValueError(f"OpenVINO runtime expects one model input, found {len(model.inputs)}")
        # A static shape lets OpenVINO plan memory and kernels once.
        model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(input_shape))})
        available = _devices(core)
        errors = []
        for device in [d for d in self.DEVICES if d in available]:
            # One stream per inference at once: each runs on its own threads.
            config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": str(parallel)}
            if device == "CPU":
                config["INFERENCE_NUM_THREADS"] = str(threads * parallel)
                # OpenVINO pins its threads to cores by default: every worker
                # process would pin to the same first core and two workers would
                # run no faster than one. Let the kernel spread them.
                config["ENABLE_CPU_PINNING"] = "NO"
            try:
                self.compiled = core.compile_model(model, device, config)
                break
            except Exception as e:  # a device that cannot take the model: try the next
                errors.append(f"{device}: {e}")
        else:
            raise RuntimeError("; ".join(errors) or "no OpenVINO device")
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(parallel):
            self.requests.put(self.compiled.create_infer_request())
        self.ports = {}
        self.output_names = []
        for port in self.compiled.outputs:
            self.output_names.append(port.get_any_name())
            for n in port.get_names():
                self.ports[n] = port
        self.name = f"openvino:{device}" + ("/int8" if precision == "int8" else "")
        self.choice = ""

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        # One request per inference at once; never more callers than requests.
        request = self.requests.get()
        try:
            result = request.infer({0: tensor})
            # Copies: the request's buffers are reused by the next inference.
            return [np.array(result[self.ports[o]]) for o in outputs]
        finally:
            self.requests.put(request)


def open_runtime(
    path: str,
    backend: str,
    input_shape: Sequence[int],
    threads: int = 1,
    parallel: int = 1,
    *,
    int8: str | None = None,
    precision: str = "auto",
    sample: np.ndarray | None = None,
) -> Runtime:
    """The runtime for `backend` (`auto`, `openvino`, `onnxruntime`) and
    `precision` (`auto`, `fp32`, `int8`: `int8` is the quantized model at
    `int8`, run by OpenVINO). Where more than one option is allowed, the
    fastest on this machine is measured (on `sample`, the model's input) and
    remembered; the returned runtime's `choice` says which and why."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend `{backend}`; allowed: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision `{precision}`; allowed: {', '.join(PRECISIONS)}")
    options = _options(path, backend, precision, int8)
    if sample is None:
        sample = np.zeros(list(input_shape), dtype=np.float32)

    opener = functools.partial(open_option, input_shape=list(input_shape), threads=threads, parallel=parallel)

    untimed: list[str] = []

    def timer(opts: Sequence[Option]) -> tuple[list[str], dict[str, float]]:
        try:
            return time_apart(opts, list(input_shape), threads, parallel, sample)
        except Exception as e:
            # Never here instead: what crashed that process would crash the
            # worker. The first option allowed, unmeasured and not remembered.
            untimed.append(one_line(e))
            log.warning("the runtimes could not be timed (%s); using %s unmeasured", untimed[0], opts[0].label)
            return [opts[0].label], {}

    try:
        chosen = choose(options, opener, sample, input_shape, threads, parallel, ChoiceStore(cache_root()), timer)
    except Exception as e:
        # OpenVINO asked for by name but unable: ONNX Runtime, with one warning.
        if backend != "openvino" or precision == "int8":
            raise
        why = "it is not installed" if isinstance(e, ImportError) else one_line(e)
        log.warning("OpenVINO cannot run %s (%s); using ONNX Runtime", path, why)
        rt, _ = opener(Option("onnxruntime", "fp32", path))
        rt.choice = f"onnxruntime fp32: OpenVINO cannot run the model ({why})"
        return rt
    chosen.runtime.choice = chosen.reason()
    if untimed:
        chosen.runtime.choice = f"{chosen.option.label}: the first allowed; the runtimes could not be timed ({untimed[0]})"
    log.info("%s runs on %s", Path(path).name, chosen.runtime.choice)
    return chosen.runtime


def open_option(o: Option, input_shape: list[int], threads: int, parallel: int) -> tuple[Runtime, Sequence[str]]:
    """Opens one option: its runtime on its file, and the outputs to time."""
    if o.runtime == "openvino":
        rt: Runtime = OpenVinoRuntime(o.path, threads, input_shape, parallel, o.precision)
    else:
        rt = OnnxRuntime(o.path, threads, parallel)
    return rt, rt.output_names


# The longest the runtimes' timing may take in its own process: well within
# the 60 s a worker has by default to start or to swap its model.
TIMING_TIMEOUT_S = 30.0


def time_apart(options: Sequence[Option], input_shape: list[int], threads: int, parallel: int, sample: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """`time_options` in a process of its own (`python -m
    orion_worker.runtimes`: a fresh interpreter that imports none of the
    worker's own code, with none of its threads or file descriptors): the
    runtimes it opens and drops never weigh on the worker (ONNX Runtime's
    library alone is 20 MB), and one that crashes takes only that process with
    it. It dies with the worker (a parent-death signal) and is killed past
    `TIMING_TIMEOUT_S`. Its log lines go to the worker's stderr."""
    import pickle
    import subprocess
    import sys

    job = pickle.dumps((list(options), input_shape, threads, parallel, sample))
    child = subprocess.Popen(
        [sys.executable, "-m", "orion_worker.runtimes"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
    )
    try:
        out, _ = child.communicate(job, timeout=TIMING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise RuntimeError(f"no answer within {TIMING_TIMEOUT_S:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeError(f"the timing process failed (exit code {child.returncode})")
    try:
        status, result = pickle.loads(out)
    except Exception as e:
        raise RuntimeError(f"unreadable answer from the timing process ({one_line(e)})") from None
    if status != "ok":
        raise RuntimeError(result)
    return result


def _die_with_parent() -> None:
    """SIGKILL when the worker that started this process ends (Linux's
    parent-death signal), however it ends."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the worker ended before the signal was set
        os._exit(1)


def _timing_main() -> int:
    """The timing process: the job on stdin (pickled by `time_apart`), the
    answer on stdout."""
    import pickle
    import sys

    _die_with_parent()
    setup_logging()
    try:
        options, input_shape, threads, parallel, sample = pickle.loads(sys.stdin.buffer.read())
        opener = functools.partial(open_option, input_shape=input_shape, threads=threads, parallel=parallel)
        answer = ("ok", time_options(options, opener, sample))
    except BaseException as e:  # the worker must hear why, whatever it was
        answer = ("error", f"{type(e).__name__}: {one_line(e)}")
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.flush()
    return 0


def _options(path: str, backend: str, precision: str, int8: str | None) -> list[Option]:
    """What may run the model: FP32 on each allowed runtime, and INT8 on
    OpenVINO where there is a variant that passed its accuracy check (or
    INT8 is asked for outright)."""
    runtimes = ["openvino", "onnxruntime"] if backend == "auto" else [backend]
    if int8 and precision == "auto" and not os.path.isfile(int8):
        log.warning("INT8 variant %s not considered: file not found", int8)
        int8 = None
    options = []
    if precision in ("auto", "fp32"):
        options += [Option(r, "fp32", path) for r in runtimes if backend != "auto" or _installed(r)]
    if precision in ("auto", "int8") and int8:
        if "openvino" not in runtimes:
            if precision == "int8":
                raise ValueError("the INT8 variant runs on OpenVINO only; backend is onnxruntime")
        elif precision == "int8":
            options.append(Option("openvino", "int8", int8))
        else:
            ok, why = int8_record.checked(path, int8)
            if ok:
                options.append(Option("openvino", "int8", int8))
            elif why.startswith(int8_record.FAILED):
                # A verdict, not a fault: the shipped variants fail it.
                log.info("INT8 variant %s not considered: %s", Path(int8).name, why)
            else:
                log.warning("INT8 variant %s not considered: %s", Path(int8).name, why)
    if precision == "int8" and not int8:
        raise ValueError("precision int8 asked for, but the model has no INT8 variant")
    if not options:
        # Nothing installed that was asked for: ONNX Runtime (a dependency) says why.
        options = [Option("onnxruntime", "fp32", path)]
    return options


def _installed(runtime: str) -> bool:
    """Whether `runtime` can be imported, without importing it (a runtime
    that is not chosen costs no memory)."""
    import importlib.util

    return importlib.util.find_spec(runtime) is not None


if __name__ == "__main__":
    raise SystemExit(_timing_main())
