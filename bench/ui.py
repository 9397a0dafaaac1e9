"""The live view's cost: three daemons side by side on the demo (640x480 H.264,
15 fps, 2 Hz inference), one run: the UI off, the UI on with nobody watching,
and the UI on with one viewer reading the live stream at ui.max_fps = 5.
Daemon CPU (the daemon process, not its worker) and RSS from /proc.

    bench/run.sh ui
    BENCH_SECONDS=60 bench/run.sh ui

Prints a Markdown table (recorded in docs/benchmarks.md) and the raw figures.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cameras import cpu_seconds, rss_mb  # noqa: E402
from run import Broker, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEO = str(ROOT / "assets/walking.mp4")
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
WORKER = f'["{ROOT}/.venv/bin/python", "-m", "orion_worker.person_detector"]'


class Daemon:
    def __init__(self, name: str, broker: Broker, ui: bool) -> None:
        self.name = name
        self.health = free_port()
        self.dir = tempfile.mkdtemp()
        cfg = Path(self.dir) / "orion.yaml"
        cfg.write_text(f"""
instance_id: {name}
camera: {{ source: file, path: "{VIDEO}" }}
stream: {{ width: 640, height: 480, warmup_duration_s: 2 }}
models: {{ person_detector: {{ max_inference_rate_hz: 2 }} }}
workers: {{ person_detector: {{ count: 1, command: {WORKER} }} }}
mqtt: {{ broker: "mqtt://127.0.0.1:{broker.port}" }}
health: {{ listen: "127.0.0.1:{self.health}" }}
outbox: {{ path: "{self.dir}/outbox" }}
ui: {{ enabled: {str(ui).lower()}, max_fps: 5 }}
framebus: {{ stats_interval_s: 60 }}
""")
        self.log = open(Path(self.dir) / "oriond.log", "w")
        self.proc = subprocess.Popen([str(ROOT / "target/release/oriond"), "--config", str(cfg)], cwd=ROOT, stderr=self.log)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readiness", timeout=1).read()
                if b'"status":"healthy"' in body:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy")

    def metric(self, name: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.health}/metrics", timeout=2).read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def viewer(port: int, stop: threading.Event, counts: dict) -> None:
    """Reads the live stream like the page does (without drawing)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s.settimeout(0.5)
    buf = b""
    while not stop.is_set():
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        counts["bytes"] += len(chunk)
        counts["frames"] += chunk.count(b"event: frame")
    s.close()


def main() -> None:
    broker = Broker()
    daemons = {name: Daemon(name, broker, ui) for name, ui in [("ui-off", False), ("ui-idle", True), ("ui-viewer", True)]}
    for d in daemons.values():
        d.wait_healthy()
    time.sleep(5)
    stop = threading.Event()
    counts = {"bytes": 0, "frames": 0}
    t = threading.Thread(target=viewer, args=(daemons["ui-viewer"].health, stop, counts), daemon=True)
    t.start()
    time.sleep(2)
    start = {n: cpu_seconds(d.proc.pid) for n, d in daemons.items()}
    enc0 = {n: d.metric(f'orion_ui_frames_encoded_total{{camera="{n}"}}') for n, d in daemons.items() if n != "ui-off"}
    f0 = counts["frames"]
    t0 = time.monotonic()
    time.sleep(SECONDS)
    elapsed = time.monotonic() - t0
    cpu = {n: 100 * (cpu_seconds(d.proc.pid) - start[n]) / elapsed for n, d in daemons.items()}
    enc = {n: (d.metric(f'orion_ui_frames_encoded_total{{camera="{n}"}}') - enc0[n]) / elapsed for n, d in daemons.items() if n != "ui-off"}
    frames_per_s = (counts["frames"] - f0) / elapsed
    rss = {n: rss_mb(d.proc.pid) for n, d in daemons.items()}
    stop.set()
    for d in daemons.values():
        d.stop()
    broker.stop()
    rows = [
        ("UI off", f"{cpu['ui-off']:.1f} %", f"{rss['ui-off']:.1f} MB", "–"),
        ("UI on, nobody watching", f"{cpu['ui-idle']:.1f} % ({cpu['ui-idle'] - cpu['ui-off']:+.1f})", f"{rss['ui-idle']:.1f} MB", f"{enc['ui-idle']:.2f} frames/s encoded"),
        ("UI on, one viewer (max_fps 5)", f"{cpu['ui-viewer']:.1f} % ({cpu['ui-viewer'] - cpu['ui-off']:+.1f})", f"{rss['ui-viewer']:.1f} MB", f"{enc['ui-viewer']:.2f} frames/s encoded, {frames_per_s:.2f} received, {counts['bytes'] / elapsed / 1024:.0f} KiB/s"),
    ]
    cpu_name = platform.processor() or platform.machine()
    print(f"\nLive view cost, {date.today()}, {os.cpu_count()} cores ({cpu_name}), {SECONDS:.0f} s side by side; command: bench/run.sh ui\n")
    print("| daemon | CPU (one core = 100 %; vs UI off) | RSS | live view |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nraw:", json.dumps({"cpu_percent": cpu, "rss_mb": rss, "encoded_per_s": enc, "received_per_s": frames_per_s}))


if __name__ == "__main__":
    main()
