"""Falls on real footage, through the daemon with the shipped settings (the
pose model, 2 Hz): for each clip, the alert raised and how long after the fall,
whether the fallen person was ever said to have left or the room said empty
while they lay there, and on everyday clips (walking, sitting, bending,
jumping, lying on a mattress) the alerts raised, which are false alarms.

    bench/run.sh falls --footage DIR    # DIR holds the clips named in CLIPS

Each clip is played once in real time: its first frame held while the daemon
warms up and sees the person, and a fall clip's last frame held 20 s (the
person stays down). The clips of falls are research footage, not shipped with
Orion; CLIPS names them (times read by eye, about +-0.5 s) so that anyone
holding them can rerun this.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Broker, free_port  # noqa: E402
from scenes import FPS, LEAD_IN, WARMUP, held_clip, run_daemon  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv/bin/python"
HOLD_S = 20.0

# file -> second the fall begins (None: everyday movement, no fall).
CLIPS: dict[str, float | None] = {
    "falls/upfall_A1_S1T1_cam2.mp4": 2.5,
    "falls/upfall_A2_S1T1_cam1.mp4": 1.0,
    "falls/upfall_A2_S1T1_cam2.mp4": 1.0,
    "falls/upfall_A3_S1T1_cam1.mp4": 1.2,
    "falls/upfall_A4_S1T1_cam2.mp4": 1.0,
    "falls/upfall_A5_S1T1_cam1.mp4": 1.0,
    "falls/upfall_A5_S1T1_cam2.mp4": 1.0,
    "falls/carehome_real_video_1.mp4": 3.0,
    "falls/carehome_real_video_3.mp4": 3.5,
    "falls/carehome_real_video_4.mp4": 13.5,
    "falls/carehome_real_video_5.mp4": 5.5,
    "everyday/upfall_A6_S1T1_cam1.mp4": None,
    "everyday/upfall_A6_S1T1_cam2.mp4": None,
    "everyday/upfall_A7_S1T1_cam1.mp4": None,
    "everyday/upfall_A8_S1T1_cam1.mp4": None,
    "everyday/upfall_A9_S1T1_cam2.mp4": None,
    "everyday/upfall_A10_S1T1_cam2.mp4": None,
    "everyday/upfall_A11_S1T1_cam1.mp4": None,
    "everyday/upfall_A11_S1T1_cam2.mp4": None,
    "everyday/intel_one-by-one-person-detection.mp4": None,
}


def config(video: Path, health: int, broker: int, state: str) -> dict:
    """The shipped settings (JSON is YAML) on one camera playing `video`."""
    return {
        "instance_id": "falls",
        "camera": {"source": "file", "path": str(video), "realtime": True},
        "stream": {"width": 640, "height": 480, "warmup_duration_s": WARMUP},
        "models": {
            "person_detector": {
                "size": "movenet",
                "catalog": {
                    "movenet": {
                        "path": str(ROOT / "models/movenet_multipose_lightning.onnx"),
                        "format": "movenet",
                        "confidence": 0.35,
                        "continue_confidence": 0.2,
                        "edge_confidence": 0.25,
                        "night": {"confidence": 0.3, "continue_confidence": 0.2, "edge_confidence": 0.2},
                    }
                },
            }
        },
        "workers": {"person_detector": {"count": 1, "command": [str(PYTHON), "-m", "orion_worker.person_detector"]}},
        "mqtt": {"broker": f"mqtt://127.0.0.1:{broker}"},
        "health": {"listen": f"127.0.0.1:{health}"},
        "outbox": {"path": f"{state}/outbox"},
        "presence": {"path": f"{state}/presence"},
    }


def run_once(broker: Broker, video: Path, seconds: float) -> list[tuple[str, dict]]:
    """Runs the daemon on `video` for `seconds` of it; what it published, in order."""
    state = tempfile.mkdtemp()
    return run_daemon(broker, config(video, free_port(), broker.port, state), "falls", seconds, state)


def score(got: list[tuple[str, dict]], fall_at: float | None) -> dict:
    """The alerts (kind, how, video second), and while the person was down:
    results that found someone, `person_left` of the person the alert is
    about (of anyone without an alert: others may walk out), the room said
    empty."""
    alerts = []
    now = 0.0
    down_results = found_down = 0
    left = []
    empty_down = False
    alerted = set()
    for topic, v in got:
        if topic.startswith("care/inferences/"):
            now = (v.get("frame_seq", 1) - 1) / FPS
            if fall_at is not None and now >= fall_at + 1.5:
                down_results += 1
                found_down += int(v.get("data", {}).get("count", 0) >= 1)
        elif topic.startswith("care/events/"):
            kind = v.get("type")
            if kind in ("fall_detected", "person_down"):
                alerts.append((kind, v.get("how"), now))
                alerted.add(v.get("track_id"))
            if kind == "person_left" and fall_at is not None and now >= fall_at:
                left.append(v.get("track_id"))
        elif topic.startswith("care/occupancy/") and fall_at is not None and now >= fall_at:
            empty_down |= v.get("occupied") is False
    left_down = sum(1 for t in left if not alerted or t in alerted)
    return {"alerts": alerts, "found_down": found_down, "down_results": down_results, "left_down": left_down, "empty_down": empty_down}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--footage", type=Path, required=True)
    p.add_argument("--only", help="run the clips whose name contains this")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    broker = Broker()
    rows = []
    try:
        for clip, fall in CLIPS.items():
            path = args.footage / clip
            if not path.exists() or (args.only and args.only not in clip):
                continue
            out = work / (path.stem + ".mp4")
            duration = held_clip(path, out, HOLD_S if fall is not None else 0.0)
            fall_at = LEAD_IN + fall if fall is not None else None
            s = score(run_once(broker, out, duration + WARMUP), fall_at)
            rows.append((clip, fall_at, s))
            print(json.dumps({"clip": clip, **s}), file=sys.stderr, flush=True)
    finally:
        broker.stop()
    print("| clip | fall | first alert | after the fall | found while down | left or empty while down | false alarms |")
    print("|---|---|---|---|---|---|---|")
    for clip, fall_at, s in rows:
        name = clip.split("/")[-1].removesuffix(".mp4")
        if fall_at is None:
            print(f"| {name} | none | | | | | {len(s['alerts'])} |")
            continue
        first = s["alerts"][0] if s["alerts"] else None
        alert = f"{first[0]} ({first[1]})" if first else "none"
        delay = f"{first[2] - fall_at:.1f} s" if first else "-"
        gone = "left" if s["left_down"] else ("empty" if s["empty_down"] else "no")
        print(f"| {name} | yes | {alert} | {delay} | {s['found_down']} of {s['down_results']} | {gone} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
