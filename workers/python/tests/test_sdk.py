"""The serve loop over in-memory pipes with the real detector."""

from __future__ import annotations

import io

import numpy as np

from orion_worker import protocol
from orion_worker.person_detector import PersonDetector
from orion_worker.sdk import serve

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
    kinds = [r["type"] for r in replies]
    assert kinds == ["ready", "result", "error", "command_result", "command_result", "error"]
    assert replies[1]["frame_seq"] == 1 and replies[1]["person_count"] >= 1
    assert replies[2]["frame_seq"] == 2 and "expected" in replies[2]["message"]
    assert replies[3]["id"] == 3 and not replies[3]["success"] and "not found" in replies[3]["message"]
    assert replies[4]["id"] == 4 and "unknown command" in replies[4]["message"]
    assert "bogus" in replies[5]["message"]
