"""The limit: the fastest way to run the model on this machine. Frames already
decoded into memory, each prepared as the model's native input (OpenCV: SSDLite
stretched to 300x300, MoveNet letterboxed into 256x256; included in the time),
then one inference on the runtime itself (not Orion's worker code), 1 thread,
in a tight loop.

    python bench/limit.py VIDEO SECONDS THREADS BACKEND [MODEL]
    # BACKEND: openvino | openvino-int8 | onnxruntime; MODEL: ssdlite (default) | movenet

Prints one JSON object: inferences per second and per-frame times.
"""

import json
import sys
import time

import cv2
import numpy as np
from video import decode

video, seconds = sys.argv[1], float(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
backend = sys.argv[4] if len(sys.argv) > 4 else "openvino"
model_name = sys.argv[5] if len(sys.argv) > 5 else "ssdlite"
FILES = {"ssdlite": "models/ssdlite_mobilenet_v2_coco", "movenet": "models/movenet_multipose_lightning"}
MODEL = FILES[model_name] + (".int8.xml" if backend == "openvino-int8" else ".onnx")
W, H = 640, 480
S = 300 if model_name == "ssdlite" else 256
cv2.setNumThreads(1)

# The video decoded once into memory (as the daemon would deliver it).
frames = decode(video, W, H)

if backend.startswith("openvino"):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(MODEL)
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([1, S, S, 3])})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()

    def infer(x: np.ndarray) -> None:
        request.infer({0: x})
else:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def infer(x: np.ndarray) -> None:
        session.run(None, {name: x})


def prepare(frame: np.ndarray) -> np.ndarray:
    if model_name == "ssdlite":
        return cv2.resize(frame, (S, S), interpolation=cv2.INTER_LINEAR)[None]
    canvas = np.zeros((S, S, 3), dtype=np.int32)
    canvas[: S * H // W, :S] = cv2.resize(frame, (S, S * H // W), interpolation=cv2.INTER_LINEAR)
    return canvas[None]


def step(frame: np.ndarray) -> None:
    infer(prepare(frame))


for f in frames[:5]:  # warm-up
    step(f)
n, times = 0, []
start = time.perf_counter()
cpu0 = time.process_time()
while time.perf_counter() - start < seconds:
    t = time.perf_counter()
    step(frames[n % len(frames)])
    times.append((time.perf_counter() - t) * 1e3)
    n += 1
elapsed = time.perf_counter() - start
print(json.dumps({
    "backend": backend,
    "frames_in_memory": len(frames),
    "inferences": n,
    "inferences_per_s": n / elapsed,
    "ms_p50": float(np.percentile(times, 50)),
    "ms_p99": float(np.percentile(times, 99)),
    "cpu_percent_of_one_core": (time.process_time() - cpu0) / elapsed * 100,
}))
