"""The serve loop over in-memory pipes with the real detector."""

from __future__ import annotations

import io
import threading

import numpy as np

from orion_worker import protocol
from orion_worker.person_detector import PersonDetector
from orion_worker.sdk import FrameError, Worker, serve

from conftest import load_rgb


def frame_message(seq: int, image: np.ndarray, data: bytes | None = None) -> dict:
    h, w = image.shape[:2]
    return {
        "type": "frame",
        "seq": seq,
        "width": w,
        "height": h,
        "format": "rgb24",
        "data": image.tobytes() if data is None else data,
        "meta": {
            "instance_id": "t",
            "room_id": "r",
            "seq": seq,
            "timestamp": "2026-01-01T00:00:00Z",
            "trace_id": f"t-{seq}",
            "roi_processing": {
                "source": "full_frame",
                "crop": {"x": 0, "y": 0, "width": w, "height": h},
                "crop_normalized": {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0},
                "target_size": 640,
            },
        },
    }


def run(worker, messages: list[dict]) -> list[dict]:
    stdin = io.BytesIO(b"".join(protocol.encode(m) for m in messages))
    stdout = io.BytesIO()
    assert serve(worker, stdin=stdin, stdout=stdout) == 0
    stdout.seek(0)
    out = []
    while (m := protocol.read_message(stdout)) is not None:
        out.append(m)
    return out


def test_ready_then_one_answer_per_message(ssd):
    image = load_rgb("astronaut.png")
    replies = run(
        PersonDetector(ssd, 0.5),
        [
            frame_message(1, image),
            frame_message(2, image, data=b"short"),
            {"type": "command", "id": 3, "name": "set_model", "params": {"path": "/nonexistent.onnx", "size": "x"}},
            {"type": "command", "id": 4, "name": "dance", "params": {}},
            {"type": "bogus"},
        ],
    )
    # Frames are answered in order; commands run beside the frame loop and
    # answer when done, so only their ids tie them to their requests.
    frames = [r for r in replies if r["type"] in ("result", "error") and r.get("frame_seq") is not None]
    commands = {r["id"]: r for r in replies if r["type"] == "command_result"}
    others = [r for r in replies if r["type"] == "error" and r.get("frame_seq") is None]
    assert replies[0]["type"] == "ready" and len(replies) == 6
    assert [f["type"] for f in frames] == ["result", "error"]
    assert frames[0]["frame_seq"] == 1 and frames[0]["person_count"] >= 1
    assert frames[1]["frame_seq"] == 2 and "expected" in frames[1]["message"]
    assert not commands[3]["success"] and "not found" in commands[3]["message"]
    assert "unknown command" in commands[4]["message"]
    assert len(others) == 1 and "bogus" in others[0]["message"]


def test_frames_in_shared_memory_are_read_without_copies(ssd):
    import mmap
    import os

    from orion_worker.sdk import SharedFrames

    image = load_rgb("astronaut.png")
    size = image.nbytes + 4096
    fd = os.memfd_create("frames")
    os.ftruncate(fd, size)
    region = mmap.mmap(fd, size)
    region[4096 : 4096 + image.nbytes] = image.tobytes()
    shared = SharedFrames(fd, size)
    inline_msg = frame_message(1, image)
    shm_msg = dict(frame_message(2, image, data=b""), shm={"offset": 4096, "length": image.nbytes})
    bad_msg = dict(frame_message(3, image, data=b""), shm={"offset": size - 10, "length": image.nbytes})
    stdin = io.BytesIO(b"".join(protocol.encode(m) for m in (inline_msg, shm_msg, bad_msg)))
    stdout = io.BytesIO()
    assert serve(PersonDetector(ssd, 0.5), stdin=stdin, stdout=stdout, shared=shared) == 0
    stdout.seek(0)
    replies = []
    while (m := protocol.read_message(stdout)) is not None:
        replies.append(m)
    assert replies[0]["type"] == "ready" and replies[0]["shm"] is True
    inline, shm, bad = replies[1:]
    assert shm["type"] == "result" and shm["detections"] == inline["detections"]
    assert bad["type"] == "error" and "outside" in bad["message"]
    os.close(fd)


def test_set_model_swaps_and_a_failed_swap_keeps_the_old_model(ssd, tmp_path):
    from test_yolo import build_model

    yolo = tmp_path / "tiny.onnx"
    build_model(str(yolo))
    image = load_rgb("astronaut.png")
    worker = PersonDetector(ssd, 0.5)
    ok, msg = worker.command("set_model", {"size": "n", "format": "yolo", "variant_320": str(yolo)})
    assert ok, msg
    loaded = worker.model_info()
    assert (loaded["name"], loaded["input_size"]) == ("n", 320) and loaded["backend"] in ("openvino:CPU", "onnxruntime:CPUExecutionProvider")
    assert loaded["choice"].startswith(("openvino fp32: fastest of", "onnxruntime fp32: fastest of")), loaded
    ok, msg = worker.command("set_model", {"size": "x", "format": "yolo", "path": str(tmp_path / "missing.onnx"), "input_size": "640"})
    assert not ok and "not found" in msg
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    ok, msg = worker.command("set_model", {"size": "b", "format": "ssd", "path": str(broken)})
    assert not ok and "cannot load model b" in msg
    assert worker.model_info() == loaded, "the old model stays"
    replies = run(worker, [frame_message(5, image)])
    assert replies[1]["model"] == {"name": "n", "input_size": 320, "backend": loaded["backend"]}, "results name the runtime, not why"


class Overlapping(Worker):
    """Frame 1 waits until frame 3 has started: with two threads, only once
    frame 2 ran beside it and finished first."""

    inference_type = "overlap"

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.third_started = threading.Event()
        self.threads: set[str] = set()

    def model_info(self):
        return protocol.model_info("fake", 1)

    def process(self, image, crop, frame):
        self.threads.add(threading.current_thread().name)
        if frame["seq"] == 1 and not self.third_started.wait(5):
            raise FrameError("frame 3 never started while frame 1 ran")
        if frame["seq"] == 3:
            self.third_started.set()
        return protocol.result(frame["seq"], "", self.inference_type, [], self.model_info(), protocol.timing(0, 0, 0, 0), None)


def test_a_parallel_worker_runs_frames_at_once_and_answers_in_order():
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    worker = Overlapping(parallel=2)
    replies = run(worker, [frame_message(1, image), frame_message(2, image), frame_message(3, image)])
    assert replies[0]["type"] == "ready" and replies[0]["parallel"] == 2
    assert [(r["type"], r["frame_seq"]) for r in replies[1:]] == [("result", 1), ("result", 2), ("result", 3)]
    assert len(worker.threads) == 2, worker.threads


def test_a_worker_takes_one_frame_at_a_time_unless_it_says_otherwise():
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    worker = Overlapping(parallel=1)
    worker.third_started.set()  # else frame 1 would wait for a frame 3 that cannot start
    replies = run(worker, [frame_message(1, image), frame_message(2, image)])
    assert replies[0]["parallel"] == 1
    assert [r["frame_seq"] for r in replies[1:]] == [1, 2]
    assert worker.threads == {threading.main_thread().name}
