"""Measures a running Orion from the outside for SECONDS: results per second seen
by an MQTT subscriber, overhead latency (capture -> MQTT receipt minus the worker's
own total time), and the daemon's CPU and RSS.

    python bench/measure.py BROKER_PORT TOPIC DAEMON_PID SECONDS [WORKER_PIDS...]

Prints one JSON object.
"""

import json
import os
import sys
import threading
import time
from datetime import datetime

import numpy as np
import paho.mqtt.client as mqtt

port, topic, pid, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
worker_pids = [int(p) for p in sys.argv[5:]]
TICK = os.sysconf("SC_CLK_TCK")
received: list[tuple[float, dict]] = []
lock = threading.Lock()


def cpu_seconds(p: int) -> float:
    with open(f"/proc/{p}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(p: int) -> float:
    with open(f"/proc/{p}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def on_message(_c, _u, msg):
    now = time.time()
    try:
        v = json.loads(msg.payload)
    except ValueError:
        return
    with lock:
        received.append((now, v))


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"measure-{os.getpid()}")
client.on_message = on_message
client.connect("127.0.0.1", port)
client.subscribe(topic, qos=1)
client.loop_start()
time.sleep(1.0)
with lock:
    received.clear()
c0, w0, t0 = cpu_seconds(pid), sum(cpu_seconds(w) for w in worker_pids), time.time()
time.sleep(seconds)
c1, w1, t1 = cpu_seconds(pid), sum(cpu_seconds(w) for w in worker_pids), time.time()
client.loop_stop()
with lock:
    got = list(received)
overheads = []
unqueued = []
queued = []
inference_ms = 0.0
for at, v in got:
    inference_ms += v["timing"].get("inference_ms", 0.0)
    captured = datetime.fromisoformat(v["captured_at"].replace("Z", "+00:00")).timestamp()
    overheads.append((at - captured) * 1e3 - v["timing"]["total_ms"])
    # Orion also reports how long the frame waited for a free worker.
    if "queue_ms" in v:
        queued.append(v["queue_ms"])
        unqueued.append(overheads[-1] - v["queue_ms"])
elapsed = t1 - t0
print(json.dumps({
    "results": len(got),
    "results_per_s": len(got) / elapsed,
    "overhead_ms_p50": float(np.percentile(overheads, 50)) if overheads else None,
    "overhead_ms_p99": float(np.percentile(overheads, 99)) if overheads else None,
    "queue_ms_p50": float(np.percentile(queued, 50)) if queued else None,
    "overhead_without_queue_ms_p50": float(np.percentile(unqueued, 50)) if unqueued else None,
    "overhead_without_queue_ms_p99": float(np.percentile(unqueued, 99)) if unqueued else None,
    "daemon_cpu_percent": (c1 - c0) / elapsed * 100,
    "workers_cpu_percent": (w1 - w0) / elapsed * 100,
    # Inference itself (one ONNX thread per worker): what the workers must spend.
    "inference_cpu_percent": inference_ms / 1e3 / elapsed * 100,
    "daemon_rss_mb": rss_mb(pid),
    "workers_rss_mb": sum(rss_mb(w) for w in worker_pids),
}))
