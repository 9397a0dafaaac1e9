"""Which model finds people down, and at what cost: the shipped SSDLite person
detector against MoveNet MultiPose (a pose model that is a person detector too),
on real footage of falls and everyday movement, side by side in one run.

    bench/run.sh pose --footage DIR    # DIR holds the clips named in CLIPS

For each clip, frames are taken at 4 per second and split into phases (upright,
down, everyday, empty) by the times in CLIPS, read by eye. A frame counts as
"found" when a model finds at least as many people as the phase has; "false" counts
frames of an empty phase, and the no-person test images, with any person. Cost is
the median time of one inference on one thread, for each runtime.

The clips of falls are research footage and are not shipped with Orion; CLIPS
names them so that anyone holding them can rerun this.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workers/python"))
from orion_worker.detectors import MoveNetDetector, SsdDetector  # noqa: E402

SSD = ROOT / "models/ssdlite_mobilenet_v2_coco.onnx"
MOVENET = ROOT / "models/movenet_multipose_lightning.onnx"
NO_PERSON = [ROOT / "workers/python/tests/images" / n for n in ("chelsea.png", "coffee.png", "rocket.jpg")]
RATE = 4.0


@dataclass
class Phase:
    name: str  # upright | down | everyday | empty
    start: float
    end: float
    people: int


# file -> phases (seconds from the start; the person count in view).
CLIPS: dict[str, list[Phase]] = {
    "falls/upfall_A1_S1T1_cam2.mp4": [Phase("upright", 0, 2.5, 2), Phase("down", 3.5, 99, 2)],
    "falls/upfall_A2_S1T1_cam1.mp4": [Phase("upright", 0, 0.9, 1), Phase("down", 1.5, 99, 1)],
    "falls/upfall_A2_S1T1_cam2.mp4": [Phase("upright", 0, 0.9, 1), Phase("down", 1.5, 99, 1)],
    "falls/upfall_A3_S1T1_cam1.mp4": [Phase("upright", 0, 1.1, 1), Phase("down", 2.5, 99, 1)],
    "falls/upfall_A4_S1T1_cam2.mp4": [Phase("upright", 0, 0.9, 1), Phase("down", 1.5, 99, 1)],
    "falls/upfall_A5_S1T1_cam1.mp4": [Phase("upright", 0, 0.9, 1), Phase("down", 1.5, 99, 1)],
    "falls/upfall_A5_S1T1_cam2.mp4": [Phase("upright", 0, 0.9, 1), Phase("down", 1.5, 99, 1)],
    "falls/carehome_real_video_1.mp4": [Phase("upright", 0, 3.0, 1), Phase("down", 4.0, 99, 1)],
    "falls/carehome_real_video_3.mp4": [Phase("upright", 0, 3.5, 1), Phase("down", 4.5, 99, 1)],
    "falls/carehome_real_video_4.mp4": [Phase("upright", 0, 13.5, 1)],
    "falls/carehome_real_video_5.mp4": [Phase("upright", 0, 5.5, 2), Phase("down", 6.0, 99, 1)],
    "everyday/upfall_A7_S1T1_cam1.mp4": [Phase("everyday", 0, 99, 1)],
    "everyday/upfall_A8_S1T1_cam1.mp4": [Phase("everyday", 0, 99, 1)],
    "everyday/upfall_A9_S1T1_cam2.mp4": [Phase("everyday", 0, 99, 1)],
    "everyday/upfall_A10_S1T1_cam2.mp4": [Phase("everyday", 0, 99, 1)],
    "everyday/upfall_A11_S1T1_cam1.mp4": [Phase("down", 0, 99, 1)],
    "everyday/upfall_A11_S1T1_cam2.mp4": [Phase("down", 0, 99, 1)],
    "everyday/intel_one-by-one-person-detection.mp4": [
        Phase("empty", 0, 6, 0), Phase("everyday", 8, 18, 1), Phase("everyday", 25, 44, 1),
        Phase("everyday", 53, 68, 1), Phase("everyday", 95, 118, 1), Phase("empty", 137, 999, 0),
    ],
}


def frames(path: Path):
    """(seconds, RGB frame) at RATE per second."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(fps / RATE))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            yield i / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()


def cost(det, image: np.ndarray, runs: int = 40) -> float:
    det.detect(image, 0.5)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        det.detect(image, 0.5)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--footage", type=Path, required=True, help="folder holding the clips named in CLIPS")
    p.add_argument("--backend", default="auto")
    args = p.parse_args()

    ssd = SsdDetector(str(SSD), backend=args.backend)
    pose = MoveNetDetector(str(MOVENET), backend=args.backend)
    models = {
        "SSDLite 0.5": lambda im: ssd.detect(im, 0.5).scores.size,
        "SSDLite 0.3": lambda im: ssd.detect(im, 0.3).scores.size,
        "MoveNet 0.3": lambda im: pose.detect(im, 0.3).scores.size,
        "MoveNet 0.25": lambda im: pose.detect(im, 0.25).scores.size,
        "MoveNet 0.2": lambda im: pose.detect(im, 0.2).scores.size,
    }
    names = list(models)
    totals: dict[str, dict[str, list[int]]] = {}
    print("| clip | phase | frames | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for clip, phases in CLIPS.items():
        path = args.footage / clip
        if not path.exists():
            print(f"| {clip} | missing | | " + " | " * len(names), file=sys.stderr)
            continue
        counts = {(ph.name, i): [0] * (len(names) + 1) for i, ph in enumerate(phases)}
        for t, image in frames(path):
            for i, ph in enumerate(phases):
                if ph.start <= t < ph.end:
                    c = counts[(ph.name, i)]
                    c[0] += 1
                    for j, n in enumerate(names):
                        found = models[n](image)
                        c[j + 1] += int(found > 0) if ph.people == 0 else int(found >= ph.people)
        for (name, _), c in counts.items():
            if not c[0]:
                continue
            print(f"| {clip.split('/')[-1]} | {name} | {c[0]} | " + " | ".join(str(v) for v in c[1:]) + " |")
            tot = totals.setdefault(name, {n: [0, 0] for n in names})
            for j, n in enumerate(names):
                tot[n][0] += c[j + 1]
                tot[n][1] += c[0]
    for name, tot in totals.items():
        label = "false (any person found)" if name == "empty" else "found"
        print(f"| **all** | {name}: {label} | {next(iter(tot.values()))[1]} | " + " | ".join(f"{tot[n][0]} ({100 * tot[n][0] / max(tot[n][1], 1):.0f} %)" for n in names) + " |")
    fp = []
    for n in names:
        fp.append(sum(int(models[n](cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)) > 0) for f in NO_PERSON))
    print(f"| no-person images | false | {len(NO_PERSON)} | " + " | ".join(str(v) for v in fp) + " |")

    image = cv2.cvtColor(cv2.imread(str(ROOT / "workers/python/tests/images/astronaut.png")), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (640, 480))
    print("\n| model, 1 thread, 640x480 frame | " + " | ".join(["onnxruntime", "openvino"]) + " |\n|---|---|---|")
    for label, make in (("SSDLite (300x300)", lambda b: SsdDetector(str(SSD), backend=b)), ("MoveNet (256x256)", lambda b: MoveNetDetector(str(MOVENET), backend=b))):
        print(f"| {label} | " + " | ".join(f"{cost(make(b), image):.1f} ms" for b in ("onnxruntime", "openvino")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
