"""What a user would write instead of Orion: one plain Python loop that decodes
(OpenCV), resizes to the model's input (SSDLite: cv2.resize to 300x300;
MoveNet: scaled into 256x256 and padded), infers (ONNX Runtime, the same model,
1 thread) and publishes (paho-mqtt, QoS 1), as fast as it can. Written the way a
user would, without any of Orion's code.

    python bench/baseline.py VIDEO SECONDS BROKER_PORT TOPIC [THREADS] [MODEL]

Prints one JSON object: results per second and CPU split into inference and the rest.
"""

import json
import sys
import time
from datetime import datetime, timezone

import cv2
import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt

video, seconds, port, topic = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
movenet = len(sys.argv) > 6 and sys.argv[6] == "movenet"
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
model = "models/movenet_multipose_lightning.onnx" if movenet else "models/ssdlite_mobilenet_v2_coco.onnx"
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
outputs = ["detection_scores:0", "detection_boxes:0", "detection_classes:0"]


def prepare(rgb_frame, h, w):
    if not movenet:
        return {"image_tensor:0": cv2.resize(rgb_frame, (300, 300))[None]}
    scale = 256 / max(h, w)
    canvas = np.zeros((256, 256, 3), dtype=np.int32)
    canvas[: round(h * scale), : round(w * scale)] = cv2.resize(rgb_frame, (round(w * scale), round(h * scale)))
    return {"input": canvas[None]}


def infer(inputs):
    return session.run(None if movenet else outputs, inputs)


def decode(out, h, w):
    if not movenet:
        scores, boxes, classes = out
        keep = (classes[0] == 1) & (scores[0] >= 0.5)
        return [
            {"bbox": {"x": float(b[1] * w), "y": float(b[0] * h), "width": float((b[3] - b[1]) * w), "height": float((b[2] - b[0]) * h)},
             "confidence": float(s), "class": "person"}
            for b, s in zip(boxes[0][keep], scores[0][keep])
        ]
    k = max(h, w) / 256  # model input -> frame pixels
    people = []
    for p in out[0][0]:
        if p[55] >= 0.35:
            y0, x0, y1, x1 = (float(v) * 256 * k for v in p[51:55])
            kps = [{"x": float(p[3 * i + 1] * 256 * k), "y": float(p[3 * i] * 256 * k), "score": float(p[3 * i + 2])} for i in range(17)]
            people.append({"bbox": {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}, "confidence": float(p[55]), "class": "person", "keypoints": kps})
    return people


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="baseline")
client.connect("127.0.0.1", port)
client.loop_start()
cap = cv2.VideoCapture(video)

n, infer_cpu = 0, 0.0
start = time.perf_counter()
cpu0 = time.process_time()
while time.perf_counter() - start < seconds:
    ok, bgr = cap.read()
    if not ok:  # loop the file
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        continue
    captured = datetime.now(timezone.utc).isoformat()
    h, w = bgr.shape[:2]
    inputs = prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), h, w)
    c = time.process_time()
    t = time.perf_counter()
    out = infer(inputs)
    infer_ms = (time.perf_counter() - t) * 1e3
    infer_cpu += time.process_time() - c
    detections = decode(out, h, w)
    payload = {"captured_at": captured, "data": {"count": len(detections), "detections": detections},
               "timing": {"total_ms": infer_ms}}
    client.publish(topic, json.dumps(payload), qos=1)
    n += 1
elapsed = time.perf_counter() - start
cpu = time.process_time() - cpu0
client.loop_stop()
print(json.dumps({
    "results": n,
    "results_per_s": n / elapsed,
    "cpu_percent_of_one_core": cpu / elapsed * 100,
    "non_inference_cpu_percent": (cpu - infer_cpu) / elapsed * 100,
}))
