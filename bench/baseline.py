"""What a user would write instead of Orion: one Python loop that captures
(OpenCV), infers (onnxruntime, the same model and preprocessing as Orion's worker)
and publishes (paho-mqtt, QoS 1), as fast as it can.

    python bench/baseline.py VIDEO SECONDS BROKER_PORT TOPIC [THREADS]

Prints one JSON object: results per second and CPU split into inference and the rest.
"""

import json
import sys
import time
from datetime import datetime, timezone

import cv2
import paho.mqtt.client as mqtt

from orion_worker.detectors import SsdDetector

video, seconds, port, topic = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
detector = SsdDetector("models/ssdlite_mobilenet_v2_coco.onnx", threads=threads)
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
    rgb = cv2.cvtColor(cv2.resize(bgr, (640, 480)), cv2.COLOR_BGR2RGB)
    c = time.process_time()
    found = detector.detect(rgb, 0.5)
    infer_cpu += time.process_time() - c
    payload = {
        "captured_at": captured,
        "data": {"count": len(found.scores), "detections": [
            {"bbox": {"x": float(b[0]), "y": float(b[1]), "width": float(b[2] - b[0]), "height": float(b[3] - b[1])},
             "confidence": float(s), "class": "person"} for b, s in zip(found.boxes, found.scores)]},
        "timing": {"total_ms": found.preprocess_ms + found.inference_ms + found.postprocess_ms},
    }
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
