"""The physical limit: the worker's own preprocessing + ONNX Runtime inference in a
tight loop over frames already in memory, same model, same thread settings.

    python bench/limit.py VIDEO SECONDS [THREADS]

Prints one JSON object: inferences per second and per-frame times.
"""

import json
import subprocess
import sys
import time

import numpy as np

from orion_worker.detectors import SsdDetector
from orion_worker.geometry import Crop

video, seconds = sys.argv[1], float(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
W, H = 640, 480

# Decode the video once into memory with GStreamer (as the daemon would deliver it).
raw = subprocess.run(
    ["gst-launch-1.0", "-q", "filesrc", f"location={video}", "!", "decodebin", "!", "videoconvert", "!",
     "videoscale", "!", f"video/x-raw,format=RGB,width={W},height={H}", "!", "fdsink", "fd=1"],
    check=True, capture_output=True,
).stdout
frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, H, W, 3)
detector = SsdDetector("models/ssdlite_mobilenet_v2_coco.onnx", threads=threads)
crop = Crop(0, 0, W, H)
for f in frames[:5]:  # warm-up
    detector.detect(crop.apply(f), 0.5)

n, times = 0, []
start = time.perf_counter()
cpu0 = time.process_time()
while time.perf_counter() - start < seconds:
    t = time.perf_counter()
    detector.detect(crop.apply(frames[n % len(frames)]), 0.5)
    times.append((time.perf_counter() - t) * 1e3)
    n += 1
elapsed = time.perf_counter() - start
print(json.dumps({
    "frames_in_memory": len(frames),
    "inferences": n,
    "inferences_per_s": n / elapsed,
    "ms_p50": float(np.percentile(times, 50)),
    "ms_p99": float(np.percentile(times, 99)),
    "cpu_percent_of_one_core": (time.process_time() - cpu0) / elapsed * 100,
}))
