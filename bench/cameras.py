"""Many cameras: one daemon serving N cameras with one worker process that works
on a frame per core at once, against N separate single-camera daemons (one
worker each), measured side by side in one run on the same broker. Every camera
replays the demo video (640x480 H.264, 15 fps) in real time, inferred at 2 Hz.
The daemon's own cost per camera is the difference between N cameras and one.
Then the largest number of cameras one daemon serves at 2 Hz each on this
machine.

    bench/run.sh cameras            # N = 32, then the search for the largest N
    BENCH_SECONDS=20 BENCH_CAMERAS=8 bench/run.sh cameras
    BENCH_SEPARATE=0 bench/run.sh cameras   # without the separate daemons
    bench/run.sh cameras pose       # the pose model against SSDLite, side by
                                    # side: CPU per camera at 2 Hz, and the most
                                    # cameras one daemon holds with each

Prints a Markdown table (recorded in docs/benchmarks.md) and the raw figures.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Broker, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEO = str(ROOT / "assets/walking.mp4")
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CAMERAS = int(os.environ.get("BENCH_CAMERAS", "32"))
SEPARATE = os.environ.get("BENCH_SEPARATE", "1") != "0"
MODEL = os.environ.get("BENCH_MODEL", "movenet")
RATE = 2.0
TICK = os.sysconf("SC_CLK_TCK")
WORKER = f'["{ROOT}/.venv/bin/python", "-m", "orion_worker.person_detector"]'


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


class Daemon:
    """One oriond with the given `cameras:` entries and worker count."""

    def __init__(self, broker: Broker, ids: list[str], workers: int, model: str = "movenet", parallel: int = 0) -> None:
        self.health = free_port()
        self.dir = tempfile.mkdtemp()
        cameras = "\n".join(
            f'  - {{ instance_id: {i}, camera: {{ source: file, path: "{VIDEO}" }} }}' for i in ids
        )
        cfg = Path(self.dir) / "orion.yaml"
        cfg.write_text(f"""
cameras:
{cameras}
stream: {{ width: 640, height: 480, warmup_duration_s: 2 }}
models: {{ person_detector: {{ size: {model}, max_inference_rate_hz: {RATE} }} }}
workers: {{ person_detector: {{ count: {workers}, parallel: {parallel}, command: {WORKER} }} }}
mqtt: {{ broker: "mqtt://127.0.0.1:{broker.port}" }}
health: {{ listen: "127.0.0.1:{self.health}" }}
framebus: {{ stats_interval_s: 60 }}
outbox: {{ path: "{self.dir}/outbox" }}
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
            time.sleep(0.3)
        raise RuntimeError(f"daemon not healthy; see {self.log.name}")

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(broker: Broker, daemons: list[Daemon], ids: list[str], seconds: float) -> dict:
    """Per-camera results/s and overhead latency, total CPU and RSS of the daemons
    and their workers, over `seconds`."""
    received: list[tuple[float, dict]] = []
    lock = threading.Lock()

    def on_message(_c, _u, msg):
        now = time.time()
        try:
            v = json.loads(msg.payload)
        except ValueError:
            return
        with lock:
            received.append((now, v))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cameras-{os.getpid()}-{time.time_ns()}")
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe("care/inferences/+/person_detection", qos=1)
    client.loop_start()
    time.sleep(2.0)
    pids = [p for d in daemons for p in d.pids()]
    with lock:
        received.clear()
    c0, t0 = sum(cpu_seconds(p) for p in pids), time.time()
    d0 = sum(cpu_seconds(d.proc.pid) for d in daemons)
    time.sleep(seconds)
    c1, t1 = sum(cpu_seconds(p) for p in pids), time.time()
    daemons_cpu = sum(cpu_seconds(d.proc.pid) for d in daemons)
    rss = sum(rss_mb(p) for p in pids)
    daemons_rss = sum(rss_mb(d.proc.pid) for d in daemons)
    client.loop_stop()
    client.disconnect()
    with lock:
        got = list(received)
    elapsed = t1 - t0
    per_camera = {i: 0 for i in ids}
    overheads = []
    unqueued = []
    for at, v in got:
        per_camera[v["instance_id"]] = per_camera.get(v["instance_id"], 0) + 1
        captured = datetime.fromisoformat(v["captured_at"].replace("Z", "+00:00")).timestamp()
        # Overhead: capture -> MQTT receipt, minus the worker's own time on the frame.
        overheads.append((at - captured) * 1e3 - v["timing"]["total_ms"])
        # The same without the wait for a free worker (capacity, not overhead).
        unqueued.append(overheads[-1] - v.get("queue_ms", 0.0))
    rates = [per_camera[i] / elapsed for i in ids]
    return {
        "cameras": len(ids),
        "min_results_per_s": min(rates),
        "mean_results_per_s": float(np.mean(rates)),
        "cpu_cores": (c1 - c0) / elapsed,
        "daemons_cpu_cores": (daemons_cpu - d0) / elapsed,
        "rss_mb": rss,
        "daemons_rss_mb": daemons_rss,
        "processes": len(pids),
        "overhead_ms_p50": float(np.percentile(overheads, 50)) if overheads else None,
        "overhead_ms_p99": float(np.percentile(overheads, 99)) if overheads else None,
        "unqueued_ms_p50": float(np.percentile(unqueued, 50)) if unqueued else None,
        "unqueued_ms_p99": float(np.percentile(unqueued, 99)) if unqueued else None,
    }


def one_daemon(broker: Broker, n: int, seconds: float, model: str = MODEL) -> dict:
    ids = [f"room-{i:02d}" for i in range(n)]
    d = Daemon(broker, ids, workers=1, model=model)
    try:
        d.wait_healthy()
        return measure(broker, [d], ids, seconds)
    finally:
        d.stop()


def separate(broker: Broker, n: int, seconds: float) -> dict:
    ids = [f"solo-{i:02d}" for i in range(n)]
    daemons = [Daemon(broker, [i], workers=1, parallel=1) for i in ids]
    try:
        for d in daemons:
            d.wait_healthy(300.0)
        return measure(broker, daemons, ids, seconds)
    finally:
        for d in daemons:
            d.stop()


def holds(m: dict) -> bool:
    return m["min_results_per_s"] >= 0.95 * RATE


def most_cameras(broker: Broker, start: int, first: dict, seconds: float, model: str) -> tuple[int, dict]:
    """The largest N one daemon serves at 2 Hz each (within 5 %), doubling
    from `start` (measured: `first`) then bisecting."""
    best, tried = (start, first) if holds(first) else (0, None), {start: first}
    lo, hi = (start, None) if holds(first) else (0, start)
    while hi is None or hi - lo > max(1, lo // 8):
        n = lo * 2 if hi is None else (lo + hi) // 2
        if n > 64 or n < 1:
            break
        m = one_daemon(broker, n, seconds, model)
        tried[n] = m
        print(f"{model}, one daemon, {n} cameras: {m}", file=sys.stderr)
        if holds(m):
            lo, best = n, (n, m)
        else:
            hi = n
    return best[0], tried


def pose() -> None:
    """SSDLite against the pose model, side by side on one broker."""
    n = CAMERAS if "BENCH_CAMERAS" in os.environ else 4
    broker = Broker()
    rows = []
    try:
        for model in ("ssdlite", "movenet"):
            m = one_daemon(broker, n, SECONDS, model)
            print(f"{model}, one daemon, {n} cameras: {m}", file=sys.stderr)
            most, _ = most_cameras(broker, n, m, max(10.0, SECONDS / 2), model)
            rows.append((model, m, most))
    finally:
        broker.stop()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    print(f"\nMachine: {cpu}, {os.cpu_count()} cores; date {date.today()}")
    print(f"Command: bench/run.sh cameras pose (BENCH_SECONDS={SECONDS:.0f}, {n} cameras at {RATE:g} Hz, 1 worker, a frame per core at once)\n")
    print(f"| model | slowest camera | CPU, {n} cameras (daemon + workers) | per camera | most cameras at 2 Hz |")
    print("|---|---|---|---|---|")
    for model, m, most in rows:
        print(f"| {model} | {m['min_results_per_s']:.2f} results/s | {m['cpu_cores']:.2f} cores | {100 * m['cpu_cores'] / n:.1f} % of a core | {most} |")


def main() -> None:
    if sys.argv[1:] == ["pose"]:
        pose()
        return
    print(f"cameras bench: {SECONDS:.0f} s per measurement, {CAMERAS} cameras, {MODEL}", file=sys.stderr)
    broker = Broker()
    try:
        solo = one_daemon(broker, 1, SECONDS)
        print(f"one daemon, 1 camera: {solo}", file=sys.stderr)
        one = one_daemon(broker, CAMERAS, SECONDS)
        print(f"one daemon, {CAMERAS} cameras: {one}", file=sys.stderr)
        many = separate(broker, min(CAMERAS, 16), SECONDS) if SEPARATE else None
        print(f"separate daemons: {many}", file=sys.stderr)
        most, tried = most_cameras(broker, CAMERAS, one, max(10.0, SECONDS / 2), MODEL)
    finally:
        broker.stop()

    extra = CAMERAS - 1
    per_cpu = 100 * (one["daemons_cpu_cores"] - solo["daemons_cpu_cores"]) / extra
    per_rss = (one["daemons_rss_mb"] - solo["daemons_rss_mb"]) / extra
    rows = [
        (f"One daemon, {CAMERAS} cameras, 1 worker: slowest camera", f"{one['min_results_per_s']:.2f} results/s (mean {one['mean_results_per_s']:.2f})", "-", ">= 1.9"),
        ("Its CPU and RSS (daemon + worker)", f"{one['cpu_cores']:.2f} cores, {one['rss_mb']:.0f} MB (daemon {one['daemons_cpu_cores']:.2f} cores, {one['daemons_rss_mb']:.0f} MB)", "-", "<= 1.6 cores, <= 600 MB"),
        ("The daemon's own cost per camera (N cameras minus 1, over N - 1)", f"{per_cpu:.2f} % of a core, {per_rss:.1f} MB", "-", "<= 2 %, <= 4 MB"),
        ("Overhead latency per camera (p50 / p99)", f"{one['overhead_ms_p50']:.2f} / {one['overhead_ms_p99']:.2f} ms", f"without the wait for the worker: {one['unqueued_ms_p50']:.2f} / {one['unqueued_ms_p99']:.2f} ms", "p99 <= 10 ms"),
        (f"Largest number of cameras one daemon holds at 2 Hz each ({MODEL})", f"{most}", f"tried {sorted(tried)}", "report"),
    ]
    if many is not None:
        k = many["cameras"]
        rows.insert(1, (f"{k} separate daemons, 1 worker each: slowest camera, CPU, RSS", f"{many['min_results_per_s']:.2f} results/s, {many['cpu_cores']:.2f} cores, {many['rss_mb']:.0f} MB ({many['processes']} processes)", f"one daemon per camera: {many['cpu_cores'] / k * 100:.1f} % of a core, {many['rss_mb'] / k:.0f} MB", "-"))
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    print(f"\nMachine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; date {date.today()}")
    print(f"Command: BENCH_SECONDS={SECONDS:.0f} BENCH_CAMERAS={CAMERAS} BENCH_MODEL={MODEL} bench/run.sh cameras\n")
    print("| measurement | result | ratio | target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nRaw: " + json.dumps({"solo": solo, "one": one, "separate": many, "search": tried}))


if __name__ == "__main__":
    main()
