"""Which runtime and precision run a model fastest on this machine: decided by
measurement, remembered on disk.

Owns the choice file `<cache>/runtime-choice.json`. For one model (its files'
contents), one machine (CPU model and instruction sets) and one set of
runtime versions and thread settings it holds the figures of every option
timed and the one kept. A model, runtime or machine that changes is timed
again at its next start; an unchanged one is opened straight away. It never
runs at frame time, only when a model is loaded, and it never fails a load
for want of a cache: without one, the options are timed at every start.

An option is a runtime (`openvino`, `onnxruntime`) with a precision (`fp32`,
or `int8`: the quantized variant, run by OpenVINO). Options are timed on the
model's real input (a frame prepared exactly as the detector prepares its
frames), interleaved so that a busy moment of the machine hurts them all
alike, and the one with the lowest median time is kept.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .logs import one_line

log = logging.getLogger("orion_worker.runtime_choice")

# Warm-up runs per option before timing (allocations, lazy kernels).
WARMUP = 3
# Timed rounds: at least MIN_ROUNDS, then until TIME_BUDGET_S has passed or MAX_ROUNDS.
MIN_ROUNDS = 8
MAX_ROUNDS = 30
TIME_BUDGET_S = 1.5
CHOICE_FILE = "runtime-choice.json"
# At most this many choices are kept (one per model, machine and setting).
MAX_ENTRIES = 64


class Runnable(Protocol):
    name: str

    def run(self, tensor: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class Option:
    runtime: str  # openvino | onnxruntime
    precision: str  # fp32 | int8
    path: str

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"


@dataclass
class Chosen:
    """The option kept and why: every option's median time (ms) when measured."""

    runtime: Runnable
    option: Option
    figures: dict[str, float] = field(default_factory=dict)
    measured_at: str = ""
    remembered: bool = False
    asked: bool = False

    def reason(self) -> str:
        if self.asked:
            return f"{self.option.label}: the only option allowed by the configuration"
        if not self.figures:
            return f"{self.option.label}: the only option that could open the model"
        others = ", ".join(f"{label} {ms:.1f} ms" for label, ms in sorted(self.figures.items(), key=lambda kv: kv[1]))
        how = f"remembered from {self.measured_at}" if self.remembered else f"measured {self.measured_at}"
        return f"{self.option.label}: fastest of {others} ({how})"


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: str) -> str:
    """sha256 of a file (an OpenVINO IR's weights too), memoized per
    path, size and modification time within the process."""
    paths = [path]
    if path.endswith(".xml"):
        paths.append(path[:-4] + ".bin")
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        key = (p, st.st_size, st.st_mtime_ns)
        if key not in _digests:
            d = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    d.update(chunk)
            _digests[key] = d.hexdigest()
        h.update(_digests[key].encode())
    return h.hexdigest()


def machine() -> str:
    """The CPU as the runtimes see it: model name, instruction sets, cores."""
    name, flags = "?", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name == "?":
                name = value.strip()
            elif key == "flags" and not flags:
                flags = value.strip()
    except OSError:
        pass
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]
    return f"{name}, {os.cpu_count()} cores, flags {digest}"


def runtime_versions() -> str:
    """The installed runtimes' versions, read from their package metadata: a
    runtime that is not used is never imported (ONNX Runtime alone is 20 MB
    of a worker's memory)."""
    from importlib import metadata

    versions = []
    for package in ("openvino", "onnxruntime"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    return ", ".join(versions)


def choice_key(options: Sequence[Option], input_shape: Sequence[int], threads: int, parallel: int) -> str:
    parts = [
        *(f"{o.label}={file_digest(o.path)}" for o in options),
        f"input {list(input_shape)}",
        f"threads {threads}",
        f"parallel {parallel}",
        machine(),
        runtime_versions(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class ChoiceStore:
    """The choice file: key -> {option, figures, measured_at}. Written whole
    (a temporary file renamed over the old one), so a reader never sees half."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / CHOICE_FILE if directory is not None else None

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> dict | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict) -> None:
        if self.path is None:
            return
        data = self._read()
        data[key] = entry
        # The oldest choices go first when there are too many.
        while len(data) > MAX_ENTRIES:
            data.pop(min(data, key=lambda k: str(data[k].get("measured_at", "")) if isinstance(data[k], dict) else ""))
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".choice-")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            log.info("runtime choice not remembered (%s): it is measured again at the next start", e)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


def _time_once(runtime: Runnable, sample: np.ndarray, outputs: Sequence[str]) -> float:
    t = time.perf_counter()
    runtime.run(sample, outputs)
    return (time.perf_counter() - t) * 1e3


def measure(opened: dict[Option, tuple[Runnable, Sequence[str]]], sample: np.ndarray) -> dict[Option, float]:
    """Median time (ms) of one inference per option, interleaved; an option
    that fails to run is left out."""
    times: dict[Option, list[float]] = {o: [] for o in opened}
    for option, (rt, outputs) in list(opened.items()):
        try:
            for _ in range(WARMUP):
                rt.run(sample, outputs)
        except Exception as e:
            log.warning("runtime %s cannot run the model (%s); not considered", option.label, one_line(e, 200))
            del times[option]
    started = time.perf_counter()
    rounds = 0
    while times and rounds < MAX_ROUNDS and (rounds < MIN_ROUNDS or time.perf_counter() - started < TIME_BUDGET_S):
        for option in times:
            rt, outputs = opened[option]
            times[option].append(_time_once(rt, sample, outputs))
        rounds += 1
    return {o: statistics.median(t) for o, t in times.items()}


def time_options(
    options: Sequence[Option],
    open_option: Callable[[Option], tuple[Runnable, Sequence[str]]],
    sample: np.ndarray,
) -> tuple[list[str], dict[str, float]]:
    """Opens every option and times those that open: the labels of the ones
    that opened, and each one's median time (ms). An option that cannot open
    or run is left out with one warning line; none is kept open."""
    opened: dict[Option, tuple[Runnable, Sequence[str]]] = {}
    for option in options:
        try:
            opened[option] = open_option(option)
        except Exception as e:
            log.warning("runtime %s cannot open %s (%s); not considered", option.label, option.path, one_line(e))
    if len(opened) < 2:
        # Nothing to compare.
        return [o.label for o in opened], {}
    figures = measure(opened, sample)
    return [o.label for o in opened], {o.label: round(ms, 2) for o, ms in figures.items()}


def _remembered(entry: dict | None, options: Sequence[Option]) -> tuple[Option, dict[str, float], str] | None:
    """A remembered choice that still names one of `options`, with its
    figures; None for none, or for one that does not read (measured again)."""
    if entry is None:
        return None
    wanted = next((o for o in options if o.label == entry.get("option")), None)
    figures = entry.get("figures")
    if wanted is None or not isinstance(figures, dict):
        return None
    try:
        return wanted, {str(k): float(v) for k, v in figures.items()}, str(entry.get("measured_at", "?"))
    except (TypeError, ValueError):
        return None


# Times the options: by default here; `runtimes` does it in a process of its
# own, so that the runtimes it does not keep never weigh on the worker.
Timer = Callable[[Sequence[Option]], tuple[list[str], dict[str, float]]]


def choose(
    options: Sequence[Option],
    open_option: Callable[[Option], tuple[Runnable, Sequence[str]]],
    sample: np.ndarray,
    input_shape: Sequence[int],
    threads: int,
    parallel: int,
    store: ChoiceStore,
    timer: Timer | None = None,
) -> Chosen:
    """Opens the fastest of `options` (`open_option` opens one and names the
    outputs to time; `timer` times them, `time_options` by default). One
    option: opened as asked, nothing measured."""
    if not options:
        raise ValueError("no runtime option to choose from")
    if len(options) == 1:
        rt, _ = open_option(options[0])
        return Chosen(rt, options[0], asked=True)
    key = choice_key(options, input_shape, threads, parallel)
    known = _remembered(store.get(key), options)
    if known is not None:
        wanted, figures, measured_at = known
        try:
            rt, _ = open_option(wanted)
            return Chosen(rt, wanted, figures, measured_at, remembered=True)
        except Exception as e:
            log.warning("the remembered runtime %s cannot open the model now (%s); measuring again", wanted.label, one_line(e))
    timer = timer or (lambda opts: time_options(opts, open_option, sample))
    could_open, figures = timer(options)
    by_label = {o.label: o for o in options}
    if len(could_open) == 1 and not figures:
        # Nothing to compare, nothing to remember: the others may open it later.
        only = by_label[could_open[0]]
        rt, _ = open_option(only)
        return Chosen(rt, only)
    if not figures:
        raise RuntimeError("no runtime can run the model: " + ", ".join(o.label for o in options))
    best = by_label[min(figures, key=lambda label: figures[label])]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rt, _ = open_option(best)
    store.put(key, {"option": best.label, "figures": figures, "measured_at": now, "model": options[0].path, "machine": machine(), "runtimes": runtime_versions()})
    return Chosen(rt, best, figures, now)
