"""Presence, before and after: scenes of people who are in the room but hard
to see (asleep in bed, in the dark, half in view at a door), each run through
the daemon twice side by side in one run: once as Orion was before presence
held (every threshold 0.5, nobody unseen, no rest, exit or ignore zones) and once with
the shipped settings. Each scene plays once in real time at 4 Hz.

    bench/run.sh scenes
    bench/run.sh scenes --clip PATH:LYING_FROM_S ...   # also your own clips of
                                                        # falls (held on their last
                                                        # frame for 25 s)

Prints a Markdown table (recorded in docs/benchmarks.md): per scene, of the
results while the person is there, how many found someone, how long the room
was said to be empty while they were there, the visits counted, and the most
people the occupancy counted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Broker, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "crates/orion/tests/scene_video.py"
PYTHON = ROOT / ".venv/bin/python"
WORKER = f'["{PYTHON}", "-m", "orion_worker.person_detector"]'
FPS = 15
RATE = 4.0
WARMUP = 2.0

# Orion before presence held: one threshold, people not detected leave.
BEFORE = {
    "models": {
        "person_detector": {
            "continue_confidence": 0.5,
            "edge_confidence": 0.5,
            "night": {"confidence": 0.5, "continue_confidence": 0.5, "edge_confidence": 0.5},
        }
    },
    "presence": {"unseen_timeout_s": 0},
}


def zone(name: str, rect: dict, kind: str | None) -> dict:
    z = {"name": name, "rect": {k: rect[k] for k in ("x", "y", "width", "height")}}
    if kind:
        z[kind] = True
    return z


def config(video: Path, zones: list[dict], before: bool, health: int, broker: int, state: str) -> dict:
    """The daemon's config (JSON is YAML): one camera on `video`."""
    c = {
        "instance_id": "scene",
        "camera": {"source": "file", "path": str(video), "realtime": True},
        "stream": {"width": 640, "height": 480, "warmup_duration_s": WARMUP},
        # SSDLite: the table in docs/benchmarks.md ("Presence") is about it;
        # the pose model has its own ("Pose").
        "models": {"person_detector": {"size": "ssdlite", "confidence": 0.5, "max_inference_rate_hz": RATE}},
        "workers": {"person_detector": {"count": 1, "command": json.loads(WORKER)}},
        "mqtt": {"broker": f"mqtt://127.0.0.1:{broker}"},
        "health": {"listen": f"127.0.0.1:{health}"},
        "outbox": {"path": f"{state}/outbox"},
        "presence": {"path": f"{state}/presence"},
        "occupancy": {"empty_after_s": 10},
        "zones": {"regions": zones},
    }
    if before:
        c["models"]["person_detector"].update(BEFORE["models"]["person_detector"])
        c["presence"].update(BEFORE["presence"])
    return c


def run_once(broker: Broker, video: Path, zones: list[dict], before: bool, seconds: float) -> list[tuple[str, dict]]:
    """Runs the daemon on `video` for `seconds` of it; everything it published."""
    state = tempfile.mkdtemp()
    return run_daemon(broker, config(video, zones, before, free_port(), broker.port, state), "scene", seconds, state)


def run_daemon(broker: Broker, cfg: dict, instance: str, seconds: float, state: str) -> list[tuple[str, dict]]:
    """Runs oriond with `cfg` (its state in `state`) for `seconds`, then stops
    it; what camera `instance` published meanwhile (not what was retained
    before), in order."""
    path = Path(state) / "orion.yaml"
    path.write_text(json.dumps(cfg))
    got: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def on_message(_c, _u, msg):
        if msg.retain:
            return  # what an earlier run left, not this one's
        try:
            v = json.loads(msg.payload)
        except ValueError:
            return
        with lock:
            got.append((msg.topic, v))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}-{time.time_ns()}")
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"care/+/{instance}/#", qos=1)
    client.loop_start()
    with open(Path(state) / "oriond.log", "w") as log:
        proc = subprocess.Popen([str(ROOT / "target/release/oriond"), "--config", str(path)], cwd=ROOT, stderr=log)
        # The video starts with the stream (during the warm-up): one pass of it.
        time.sleep(seconds + 1.0)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    client.loop_stop()
    client.disconnect()
    with lock:
        return list(got)


def video_time(result: dict, duration: float) -> float:
    return ((result.get("frame_seq", 1) - 1) / FPS) % duration


def score(got: list[tuple[str, dict]], present: tuple[float, float], duration: float) -> dict:
    """Of the results while the person is there: found; the room said empty
    while they were there; visits."""
    start, end = present
    results = [v for t, v in got if t.startswith("care/inferences/") and start + 1.0 <= video_time(v, duration) < end]
    found = sum(1 for v in results if v.get("data", {}).get("count", 0) >= 1)
    # Occupancy: the time it said "empty" while the person was there, from
    # the order of publications (results carry the video time).
    empty_s = 0.0
    occupied = None
    last_t = None
    for t, v in got:
        if t.startswith("care/inferences/"):
            vt = video_time(v, duration)
            if last_t is not None and occupied is False and start <= vt < end and vt > last_t:
                empty_s += vt - last_t
            last_t = vt
        elif t.startswith("care/occupancy/") and isinstance(v, dict) and "occupied" in v:
            occupied = v["occupied"]
    visits = sum(1 for t, v in got if t.startswith("care/events/") and v.get("type") == "person_entered")
    counts = [v.get("count", 0) for t, v in got if t.startswith("care/occupancy/") and isinstance(v, dict)]
    return {"found": found, "results": len(results), "empty_s": round(empty_s, 1), "visits": visits, "most": max(counts, default=0)}


LEAD_IN = WARMUP + 2.0


def held_clip(path: Path, out: Path, hold_s: float) -> float:
    """`path` re-encoded at 640x480, 15 fps, its first frame held [`LEAD_IN`]
    (the daemon warms up, then sees the person before anything happens) and
    its last frame held `hold_s`; the new duration."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or FPS
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(f, (640, 480)), cv2.COLOR_BGR2RGB))
    if not frames:
        raise RuntimeError(f"no frames in {path}")
    enc = [
        "gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
        "rawvideoparse", "width=640", "height=480", "format=rgb", f"framerate={FPS}/1", "!",
        "videoconvert", "!", "video/x-raw,format=I420", "!",
        "x264enc", "bitrate=800", "speed-preset=veryfast", "key-int-max=15", "!",
        "mp4mux", "!", "filesink", f"location={out}",
    ]
    proc = subprocess.Popen(enc, stdin=subprocess.PIPE)
    for _ in range(int(LEAD_IN * FPS)):
        proc.stdin.write(frames[0].tobytes())
    n = int(len(frames) / src_fps * FPS)
    for i in range(n):
        proc.stdin.write(frames[min(int(i * src_fps / FPS), len(frames) - 1)].tobytes())
    for _ in range(int(hold_s * FPS)):
        proc.stdin.write(frames[-1].tobytes())
    proc.stdin.close()
    proc.wait()
    return LEAD_IN + n / FPS + hold_s


def scene(dir: Path, name: str, args: list[str]) -> tuple[Path, dict]:
    out = dir / f"{name}.mp4"
    info = json.loads(subprocess.check_output([str(PYTHON), str(SCENES), str(out), *args]))
    return out, info


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clip", action="append", default=[], help="PATH:LYING_FROM_S, a fall clip")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    rows = []
    cases = []
    video, info = scene(work, "bed", ["bed", "--lying-s", "20"])
    rest = zone("bed", info["bed"], "rest")
    plain = zone("bed", info["bed"], None)
    cases.append(("asleep in bed", video, info, (info["lying_s"], info["up_s"]), [plain], [rest]))
    video, info = scene(work, "night", ["bed", "--lying-s", "20", "--night"])
    cases.append(("asleep in bed, dark and grayscale", video, info, (info["lying_s"], info["up_s"]), [plain], [rest]))
    video, info = scene(work, "edge", ["edge", "--stay-s", "20"])
    door = info["door"]
    cases.append(("60 % in view at a door", video, info, (info["in_view_s"], info["gone_s"]), [zone("door", door, None)], [zone("door", door, "exit")]))
    video, info = scene(work, "picture", ["picture"])
    cases.append(("a picture of a person on the wall, a resident comes and goes", video, info, (info["in_view_s"], info["gone_s"]), [], [zone("picture", info["picture"], "ignore")]))
    for clip in args.clip:
        path, _, lying = clip.rpartition(":")
        out = work / (Path(path).stem + ".mp4")
        duration = held_clip(Path(path), out, 25.0)
        info = {"duration_s": duration}
        cases.append((f"fallen ({Path(path).name})", out, info, (LEAD_IN + float(lying), duration), [], []))
    broker = Broker()
    try:
        for name, video, info, present, before_zones, after_zones in cases:
            duration = info["duration_s"]
            got = {}
            for label, zones, before in (("before", before_zones, True), ("after", after_zones, False)):
                got[label] = score(run_once(broker, video, zones, before, duration + WARMUP), present, duration)
            rows.append((name, present, got))
            print(json.dumps({"scene": name, **got}), file=sys.stderr, flush=True)
    finally:
        broker.stop()
    print("| scene (person there) | found before | found after | said empty before | said empty after | visits before / after | most people counted before / after |")
    print("|---|---|---|---|---|---|---|")
    for name, (start, end), got in rows:
        b, a = got["before"], got["after"]
        print(
            f"| {name} ({end - start:.0f} s) | {b['found']} of {b['results']} | {a['found']} of {a['results']} "
            f"| {b['empty_s']} s | {a['empty_s']} s | {b['visits']} / {a['visits']} | {b['most']} / {a['most']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
