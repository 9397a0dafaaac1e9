"""Inference runtimes: run one ONNX model on the fastest engine the machine has.

- `openvino`: Intel's OpenVINO runtime (PyPI `openvino`), the fastest on x86 CPUs
  for the shipped models (measured: SSDLite 300x300, 1 thread, about 1.2x ONNX
  Runtime). The model is compiled for a static input shape with the latency hint
  and a fixed number of threads; a GPU or NPU is used where OpenVINO sees one.
- `onnxruntime`: ONNX Runtime, with the CUDA provider where the build has it.
- `auto`: OpenVINO when it is installed and compiles the model, else ONNX Runtime.

OpenVINO keeps the compiled model in a cache directory ([`cache_dir`]): a
worker restarted, or started again with the same model, imports it instead of
compiling it (measured: 0.45 s to 0.15 s for SSDLite on an idle 2-core machine;
compiling takes more of a busy one). A cache that cannot be used is skipped.

A model that OpenVINO cannot load or compile falls back to ONNX Runtime with one
warning line naming the reason; it never fails the worker for that.
A runtime takes the model's input exactly as the model wants it (static shape,
prepared by the detector) and returns the outputs asked for, in that order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger("orion_worker.runtimes")

BACKENDS = ("auto", "openvino", "onnxruntime")


def cache_dir() -> Path | None:
    """Where compiled models are kept: `$ORION_CACHE_DIR`, else systemd's
    `$CACHE_DIRECTORY` (the service's /var/cache/orion), else
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
    path = root / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.info("no model cache at %s (%s); models are compiled at every start", path, e)
        return None
    return path if os.access(path, os.W_OK) else None


class Runtime(Protocol):
    #: `openvino:CPU`, `onnxruntime:CPUExecutionProvider`, ...
    name: str
    #: The model's output names, in the graph's order.
    output_names: list[str]

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]: ...


class OnnxRuntime:
    def __init__(self, path: str, threads: int) -> None:
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

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        return self.session.run(list(outputs), {self.input_name: tensor})


class OpenVinoRuntime:
    #: Devices tried in this order when present; the CPU is always there.
    DEVICES = ("GPU", "NPU", "CPU")

    def __init__(self, path: str, threads: int, input_shape: Sequence[int]) -> None:
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
        available = set(core.available_devices)
        errors = []
        for device in [d for d in self.DEVICES if d in available]:
            config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
            if device == "CPU":
                config["INFERENCE_NUM_THREADS"] = str(threads)
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
        self.request = self.compiled.create_infer_request()
        self.ports = {}
        self.output_names = []
        for port in self.compiled.outputs:
            self.output_names.append(port.get_any_name())
            for n in port.get_names():
                self.ports[n] = port
        self.name = f"openvino:{device}"

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        result = self.request.infer({0: tensor})
        # Copies: the request's buffers are reused by the next inference.
        return [np.array(result[self.ports[o]]) for o in outputs]


def open_runtime(path: str, backend: str, input_shape: Sequence[int], threads: int = 1) -> Runtime:
    """The runtime for `backend` (`auto`, `openvino`, `onnxruntime`)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend `{backend}`; allowed: {', '.join(BACKENDS)}")
    if backend in ("auto", "openvino"):
        try:
            return OpenVinoRuntime(path, threads, input_shape)
        except ImportError:
            if backend == "openvino":
                log.warning("backend openvino asked for %s but OpenVINO is not installed; using ONNX Runtime", path)
        except Exception as e:
            reason = " ".join(str(e).split())[:300]
            log.warning("OpenVINO cannot compile %s (%s); using ONNX Runtime", path, reason)
    return OnnxRuntime(path, threads)
