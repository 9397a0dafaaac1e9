"""The worker serve loop: everything a worker needs besides its model.

A worker subclasses `Worker` (or provides the same methods) and calls `serve`.
`serve` sends `ready`, then answers each `frame` with a `result` (or an `error`
naming the frame), each `command` with a `command_result`, and returns at end of
input (the daemon closing stdin is the request to stop).

A worker whose `parallel` is above 1 works on that many frames at once, each on
a thread of its own (its `process` must allow that; runtimes release the GIL
while they infer), and still answers them in the order they came: the daemon
sends at most `parallel` frames ahead (it reads the count from `ready`).

Stdout carries the protocol only: `serve` moves the protocol to a private copy of
file descriptor 1 and points fd 1 at stderr, so a stray print() or a native
library's output cannot corrupt the stream.
"""

from __future__ import annotations

import logging
import mmap
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Optional

import numpy as np

from . import protocol
from .geometry import Crop
from .logs import setup_logging

log = logging.getLogger("orion_worker")


class FrameError(ValueError):
    """A frame that cannot be processed (answered with an `error`, worker goes on)."""


class Worker:
    inference_type: str = "unknown"
    #: Frames worked on at once (`process` is then called from that many threads).
    parallel: int = 1

    def model_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def process(self, image: np.ndarray, crop: Crop, frame: dict[str, Any]) -> dict[str, Any]:
        """Returns a `result` message for one frame (see `protocol.result`)."""
        raise NotImplementedError

    def command(self, name: str, params: dict[str, str]) -> tuple[bool, str]:
        return False, f"unknown command `{name}`"


class SharedFrames:
    """The shared-memory region the daemon offers (file descriptor and size in
    `ORION_SHM_FD` / `ORION_SHM_SIZE`): frames arrive there instead of inline."""

    def __init__(self, fd: int, size: int) -> None:
        self.map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        self.size = size

    @staticmethod
    def from_env() -> "Optional[SharedFrames]":
        fd, size = os.environ.get("ORION_SHM_FD"), os.environ.get("ORION_SHM_SIZE")
        if not fd or not size:
            return None
        try:
            return SharedFrames(int(fd), int(size))
        except (OSError, ValueError) as e:
            log.warning("shared memory offered but not usable (%s); frames will come inline", e)
            return None

    def view(self, offset: int, length: int) -> memoryview:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FrameError(f"shared-memory slice {offset}+{length} is outside the {self.size}-byte region")
        return memoryview(self.map)[offset : offset + length]


def frame_image(frame: dict[str, Any], shared: "Optional[SharedFrames]" = None) -> np.ndarray:
    """The frame's pixels as an HxWx3 uint8 array (no copy), validated."""
    fmt = frame.get("format")
    if fmt != "rgb24":
        raise FrameError(f"unsupported pixel format `{fmt}`; supported: rgb24")
    width, height, data = frame.get("width"), frame.get("height"), frame.get("data")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise FrameError(f"invalid frame size {width!r}x{height!r}")
    slice_ = frame.get("shm")
    if slice_ is not None:
        if shared is None:
            raise FrameError("frame is in shared memory, but none is mapped")
        if not isinstance(slice_, dict) or not isinstance(slice_.get("offset"), int) or not isinstance(slice_.get("length"), int):
            raise FrameError("`shm` must be {offset, length}")
        data = shared.view(slice_["offset"], slice_["length"])
    elif not isinstance(data, (bytes, bytearray)):
        raise FrameError("frame data is not binary")
    expected = width * height * 3
    if len(data) != expected:
        raise FrameError(f"frame has {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


def start_worker(log_level: str = "INFO") -> BinaryIO:
    """What every worker does first: ignore SIGINT (the daemon owns shutdown: it
    closes stdin, and a Ctrl-C meant for it must not kill the worker mid-frame),
    log with the daemon's level prefixes, and claim stdout for the protocol before
    anything (a runtime library included) can print. Returns the protocol stream."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(getattr(logging, str(log_level).upper(), logging.INFO))
    return protocol_stdout()


def protocol_stdout() -> BinaryIO:
    """A private binary stream on the original stdout; fd 1 then points at stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


class _Output:
    """The protocol stream, shared by the frame loop and command threads."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            protocol.write_message(self.stream, message)


# How long `serve` waits at end of input for commands still running.
COMMAND_DRAIN_S = 5.0


class _Frames:
    """Answers frames: one at a time on the reading thread, or `parallel` at
    once on a thread pool with one sender thread that answers in arrival
    order."""

    def __init__(self, worker: Worker, shared: Optional[SharedFrames], out: _Output, parallel: int) -> None:
        self.worker, self.shared, self.out = worker, shared, out
        self.pool: Optional[ThreadPoolExecutor] = None
        if parallel > 1:
            self.pool = ThreadPoolExecutor(parallel, thread_name_prefix="frame")
            # Bounded: the daemon sends at most `parallel` frames ahead (one
            # more for a paced file); one that sends more waits here (the
            # reading thread blocks).
            self.answers: "queue.Queue[Optional[Future]]" = queue.Queue(maxsize=2 * parallel)
            self.sender = threading.Thread(target=self._send_in_order, name="answers", daemon=True)
            self.sender.start()

    def submit(self, frame: dict[str, Any]) -> None:
        if self.pool is None:
            self.out.send(_handle_frame(self.worker, frame, self.shared))
        else:
            self.answers.put(self.pool.submit(_handle_frame, self.worker, frame, self.shared))

    def _send_in_order(self) -> None:
        while (answer := self.answers.get()) is not None:
            try:
                self.out.send(answer.result())
            except Exception:
                # The stream to the daemon is broken (or an answer cannot be
                # written): one frame at a time this ends `serve`; here the
                # whole process ends, so that the daemon restarts it at once
                # instead of waiting for a hang.
                log.exception("cannot send an answer; exiting")
                os._exit(1)

    def close(self, timeout: float) -> None:
        """Answers the frames already taken (within `timeout`), then stops."""
        if self.pool is None:
            return
        try:
            self.answers.put(None, timeout=timeout)
        except queue.Full:
            pass
        self.sender.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)


def serve(
    worker: Worker,
    stdin: Optional[BinaryIO] = None,
    stdout: Optional[BinaryIO] = None,
    shared: Optional[SharedFrames] = None,
) -> int:
    """`shared`: the shared-memory region; by default the one the daemon offers in
    the environment, if any."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    out = _Output(stdout if stdout is not None else protocol_stdout())
    shared = shared if shared is not None else SharedFrames.from_env()
    parallel = max(1, int(getattr(worker, "parallel", 1)))
    out.send(protocol.ready(worker.inference_type, worker.model_info(), os.getpid(), shm=shared is not None, parallel=parallel))
    frames = _Frames(worker, shared, out, parallel)
    commands: list[threading.Thread] = []
    try:
        while True:
            try:
                msg = protocol.read_message(stdin)
            except protocol.ProtocolError as e:
                log.error("cannot read from the daemon: %s", e)
                out.send(protocol.error(str(e), fatal=True))
                return 1
            if msg is None:
                log.info("input closed; exiting")
                return 0
            kind = msg["type"]
            if kind == "frame":
                frames.submit(msg)
            elif kind == "command":
                # Commands (a model swap takes seconds) run beside the frame loop,
                # so results keep flowing; each answers when it is done.
                t = threading.Thread(target=lambda m=msg: out.send(_handle_command(worker, m)), daemon=True)
                t.start()
                commands = [c for c in commands if c.is_alive()] + [t]
            else:
                out.send(protocol.error(f"unknown message type `{kind}`"))
    finally:
        deadline = time.monotonic() + COMMAND_DRAIN_S
        frames.close(COMMAND_DRAIN_S)
        for t in commands:
            t.join(max(0.0, deadline - time.monotonic()))


def _handle_frame(worker: Worker, frame: dict[str, Any], shared: Optional[SharedFrames]) -> dict[str, Any]:
    seq = frame.get("seq") if isinstance(frame.get("seq"), int) else None
    try:
        image = frame_image(frame, shared)
        meta = frame.get("meta") or {}
        crop = Crop.from_roi(meta.get("roi_processing"), image.shape[1], image.shape[0])
        return worker.process(image, crop, frame)
    except FrameError as e:
        log.warning("frame %s rejected: %s", seq, e)
        return protocol.error(str(e), frame_seq=seq)
    except Exception as e:  # a model failure must not kill the worker
        log.exception("frame %s failed", seq)
        return protocol.error(f"inference failed: {e}", frame_seq=seq)


def _handle_command(worker: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    command_id = msg.get("id") if isinstance(msg.get("id"), int) else 0
    name = msg.get("name")
    params = msg.get("params") or {}
    if not isinstance(name, str) or not isinstance(params, dict):
        return protocol.command_result(command_id, False, "command needs a string `name` and a map `params`")
    started = time.perf_counter()
    try:
        ok, message = worker.command(name, params)
    except Exception as e:
        log.exception("command %s failed", name)
        ok, message = False, f"command `{name}` failed: {e}"
    log.info("command %s -> %s in %.0f ms: %s", name, "ok" if ok else "failed", (time.perf_counter() - started) * 1e3, message)
    # A model swap says what now runs (the runtime chosen and why).
    model = worker.model_info() if ok and name == "set_model" else None
    return protocol.command_result(command_id, ok, message, model)
