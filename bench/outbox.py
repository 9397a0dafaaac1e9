"""The outbox: what storing every event costs, and what a backlog costs.

1. Append cost per event, with and without fsync (the daemon's own store, through
   the outbox_fill example), and the delivery cost (publish, PUBACK, remove) per
   event, from the time a daemon takes to drain a backlog.
2. A daemon started with 10,000 events queued (the broker away) against the same
   daemon with an empty outbox, side by side: RSS; then the broker comes back and
   the backlog drains: time from the broker's start to the last event received
   (includes the daemon's reconnect back-off) and from the first to the last.

    bench/run.sh outbox
    BENCH_BACKLOG=20000 bench/run.sh outbox

Prints a Markdown table (recorded in docs/benchmarks.md) and the raw figures.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cameras import rss_mb  # noqa: E402
from run import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEO = str(ROOT / "assets/walking.mp4")
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "10000"))
FILL = str(ROOT / "target/release/examples/outbox_fill")
WORKER = f'["{ROOT}/.venv/bin/python", "-m", "orion_worker.person_detector"]'


def fill(directory: str, camera: str, n: int, fsync: bool) -> dict:
    out = subprocess.run(
        [FILL, directory, camera, str(n), "fsync" if fsync else "nofsync"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


class Broker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = tempfile.mkdtemp()
        conf = Path(self.dir) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
                c.connect("127.0.0.1", port)
                c.disconnect()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Daemon:
    def __init__(self, instance: str, port: int, outbox: str) -> None:
        self.health = free_port()
        self.dir = tempfile.mkdtemp()
        cfg = Path(self.dir) / "orion.yaml"
        cfg.write_text(f"""
instance_id: {instance}
camera: {{ source: file, path: "{VIDEO}" }}
stream: {{ width: 640, height: 480, warmup_duration_s: 2 }}
models: {{ person_detector: {{ max_inference_rate_hz: 2 }} }}
workers: {{ person_detector: {{ count: 1, command: {WORKER} }} }}
mqtt: {{ broker: "mqtt://127.0.0.1:{port}" }}
health: {{ listen: "127.0.0.1:{self.health}" }}
outbox: {{ path: "{outbox}" }}
""")
        self.log = open(Path(self.dir) / "oriond.log", "w")
        self.proc = subprocess.Popen([str(ROOT / "target/release/oriond"), "--config", str(cfg)], cwd=ROOT, stderr=self.log)

    def metric(self, name: str) -> float | None:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.health}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    def wait_running(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric('orion_running{camera="' + self.instance() + '"}') == 1.0:
                return
            time.sleep(0.1)
        raise RuntimeError("daemon did not start")

    def instance(self) -> str:
        return Path(self.dir, "orion.yaml").read_text().split("instance_id: ")[1].split()[0]

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    work = tempfile.mkdtemp()
    # 1. Append cost.
    appends = {
        "fsync": fill(f"{work}/cost-fsync", "cost", 2000, True),
        "nofsync": fill(f"{work}/cost-nofsync", "cost", 20000, False),
    }

    # 2. Backlog: one daemon with BACKLOG events queued, one with none, same port
    # (no broker yet), side by side.
    port = free_port()
    fill(f"{work}/queued", "queued", BACKLOG, True)
    queued = Daemon("queued", port, f"{work}/queued")
    empty = Daemon("empty", port, f"{work}/empty")
    queued.wait_running()
    empty.wait_running()
    time.sleep(10)
    rss = {"queued": queued.rss_mb(), "empty": empty.rss_mb()}

    received: list[float] = []
    done = threading.Event()

    def on_message(_c, _u, msg) -> None:
        if b'"bench-fill-' in msg.payload:
            received.append(time.monotonic())
            if len(received) >= BACKLOG:
                done.set()

    broker_started = time.monotonic()
    broker = Broker(port)
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("care/events/queued", qos=1)
    sub.loop_start()
    done.wait(timeout=300)
    drained_at = time.monotonic()
    deadline = time.time() + 30
    while time.time() < deadline and queued.metric('orion_outbox_queued{camera="queued"}') not in (0.0,):
        time.sleep(0.1)
    rss["queued_after_drain"] = queued.rss_mb()
    sub.loop_stop()
    queued.stop()
    empty.stop()
    broker.stop()

    n = len(received)
    first_to_last = received[-1] - received[0] if n > 1 else float("nan")
    start_to_last = (received[-1] if n else drained_at) - broker_started
    delivery_us = first_to_last * 1e6 / max(n - 1, 1)
    rows = [
        ("append, fsync on (default; survives a power cut)", f"{appends['fsync']['us_per_append']:.0f} µs/event"),
        ("append, fsync off (survives a crash or kill)", f"{appends['nofsync']['us_per_append']:.1f} µs/event"),
        ("delivery: publish + PUBACK + remove (drain rate)", f"{delivery_us:.0f} µs/event ({(n - 1) / first_to_last:.0f} events/s)"),
        (f"{BACKLOG} events queued: daemon RSS", f"{rss['queued']:.1f} MB (empty outbox: {rss['empty']:.1f} MB, +{rss['queued'] - rss['empty']:.1f} MB)"),
        (f"{BACKLOG} events: first to last received", f"{first_to_last:.2f} s"),
        ("broker start to last received (with reconnect back-off)", f"{start_to_last:.2f} s"),
        ("events received", f"{n} of {BACKLOG}"),
        ("daemon RSS after the drain", f"{rss['queued_after_drain']:.1f} MB"),
    ]
    cpu = platform.processor() or platform.machine()
    print(f"\nOutbox benchmark, {date.today()}, {os.cpu_count()} cores ({cpu}); command: bench/run.sh outbox\n")
    print("| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\nraw:", json.dumps({"appends": appends, "rss_mb": rss, "received": n, "first_to_last_s": first_to_last, "start_to_last_s": start_to_last}))


if __name__ == "__main__":
    main()
