"""FP32 against INT8 on real footage: people found standing, down and in
everyday movement, false positives where nobody is, how much the box of a
still person moves, and the cost of one inference; side by side in one run.

    bench/run.sh int8 --footage DIR    # DIR holds the clips named in bench/pose.py

The labelled clips and phases are bench/pose.py's (research footage, not
shipped). "Found" counts frames where the model finds at least as many people
as the phase has, at each model's start and keep thresholds. "Still" is the
90th percentile of how far the most confident box moves between frames of the
clips of someone standing or sitting still, in parts of the box's size (the
tracker calls a box that moves more than 0.02 someone who moved).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workers/python"))
sys.path.insert(0, str(ROOT / "bench"))
from orion_worker.detectors import Engine, MoveNetDetector, SsdDetector  # noqa: E402
from orion_worker.int8_check import labelled_scenes, steadiness, still_clips  # noqa: E402
from pose import CLIPS, NO_PERSON, cost, frames  # noqa: E402

M = ROOT / "models"
MODELS = {
    # name: (detector class, file stem, thresholds)
    "MoveNet": (MoveNetDetector, "movenet_multipose_lightning", (0.35, 0.2)),
    "SSDLite": (SsdDetector, "ssdlite_mobilenet_v2_coco", (0.5, 0.3)),
}
STILL_CLIPS = ["everyday/upfall_A7_S1T1_cam1.mp4", "everyday/upfall_A8_S1T1_cam1.mp4"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--footage", type=Path, required=True)
    args = p.parse_args()
    detectors = {}
    for name, (cls, stem, _) in MODELS.items():
        fp32 = str(M / f"{stem}.onnx")
        detectors[(name, "FP32")] = cls(fp32, engine=Engine("openvino", "fp32"))
        detectors[(name, "INT8")] = cls(fp32, engine=Engine("openvino", "int8", str(M / f"{stem}.int8.xml")))
    columns = [(n, prec, c) for n, (_, _, ts) in MODELS.items() for c in ts for prec in ("FP32", "INT8")]
    totals: dict[str, list[list[int]]] = {}
    for clip, phases in CLIPS.items():
        path = args.footage / clip
        if not path.exists():
            print(f"missing {clip}", file=sys.stderr)
            continue
        for t, image in frames(path):
            for ph in phases:
                if not ph.start <= t < ph.end:
                    continue
                row = totals.setdefault(ph.name, [[0, 0] for _ in columns])
                counts = {}
                for (n, prec), det in detectors.items():
                    counts[(n, prec)] = det.detect(image, min(MODELS[n][2])).scores
                for i, (n, prec, c) in enumerate(columns):
                    k = int((counts[(n, prec)] >= c).sum())
                    row[i][0] += int(k > 0) if ph.people == 0 else int(k >= ph.people)
                    row[i][1] += 1
    for f in NO_PERSON:
        image = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        row = totals.setdefault("empty", [[0, 0] for _ in columns])
        for i, (n, prec, c) in enumerate(columns):
            row[i][0] += int(len(detectors[(n, prec)].detect(image, c).scores) > 0)
            row[i][1] += 1

    print("| frames | " + " | ".join(f"{n} {prec} @{c}" for n, prec, c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for phase, row in totals.items():
        label = "nobody there: false positives" if phase == "empty" else f"{phase}: found"
        print(f"| {label} ({row[0][1]}) | " + " | ".join(f"{a} ({100 * a / max(b, 1):.0f} %)" for a, b in row) + " |")

    still_frames = []
    for clip in STILL_CLIPS:
        path = args.footage / clip
        if path.exists():
            still_frames.append([im for _, im in frames(path)][:60])
    shipped = still_clips(ROOT / "models/check/still_people.mp4")
    scene = next(s.image for s in labelled_scenes(ROOT / "workers/python/tests/images") if s.set == "standing" and s.image.shape[:2] == (480, 640))
    print("\n| model | still box move p90, footage (standing, sitting) | same, shipped check clip | ms per inference, 1 thread |")
    print("|---|---|---|---|")
    for (n, prec), det in detectors.items():
        c = min(MODELS[n][2])
        print(f"| {n} {prec} | {steadiness(det, still_frames, c)['move_p90']:.4f} | {steadiness(det, shipped, c)['move_p90']:.4f} | {cost(det, scene):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
