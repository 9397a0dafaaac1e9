"""The shipped worker alone, without the daemon: its serve loop answers frames
already in memory (the demo video decoded once, sent as protocol messages
through an in-memory pipe) one at a time, then N at once. How well one process
keeps N cores busy, with nothing else (decoding, the daemon) competing.

    python bench/worker_parallel.py VIDEO SECONDS MODEL [N]   # MODEL: ssdlite | movenet

Prints one JSON object: frames per second for 1 and N at once, and the ratio.
"""

import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from video import decode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workers/python"))
from orion_worker import protocol  # noqa: E402
from orion_worker.detectors import load_model_set  # noqa: E402
from orion_worker.person_detector import PersonDetector  # noqa: E402
from orion_worker.sdk import serve  # noqa: E402

video, seconds, model = sys.argv[1], float(sys.argv[2]), sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else (os.cpu_count() or 1)
W, H = 640, 480
FILES = {"ssdlite": ("ssd", "models/ssdlite_mobilenet_v2_coco.onnx"), "movenet": ("movenet", "models/movenet_multipose_lightning.onnx")}
fmt, path = FILES[model]

frames = decode(video, W, H)


def message(seq: int, image: np.ndarray) -> bytes:
    return protocol.encode({
        "type": "frame", "seq": seq, "width": W, "height": H, "format": "rgb24", "data": image.tobytes(),
        "meta": {"instance_id": "b", "room_id": "b", "seq": seq, "timestamp": "", "trace_id": str(seq),
                 "roi_processing": {"source": "full_frame", "crop": {"x": 0, "y": 0, "width": W, "height": H},
                                    "crop_normalized": {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}, "target_size": 640}},
    })


# Every frame of the video, encoded once: the serve loop reads them from memory.
MESSAGES = [message(i, f) for i, f in enumerate(frames)]
BATCH = b"".join(MESSAGES)


def rate(parallel: int) -> float:
    models = load_model_set({"size": model, "format": fmt, "path": str(ROOT / path)}, 1, parallel)
    worker = PersonDetector(models, 0.3, 1, parallel)
    serve(worker, stdin=io.BytesIO(b"".join(MESSAGES[:10])), stdout=io.BytesIO())  # warm-up
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        serve(worker, stdin=io.BytesIO(BATCH), stdout=io.BytesIO())
        count += len(frames)
    return count / (time.perf_counter() - start)


one = rate(1)
many = rate(n)
print(json.dumps({"model": model, "at_once": n, "one_per_s": one, "many_per_s": many, "ratio": many / one}))
