"""The shipped scene brightness worker: how light the room is and how much moved.

A second inference type next to the person detector, cheap enough to run on every
frame of every camera: night detection (the room went dark: lights off, a covered
lens) and a motion level between two frames of the same camera. Its result carries
no boxes; it publishes its own `data` object:

    {"brightness": 0..255, "dark": bool, "motion": 0..1 or null}

`brightness` is the mean luma (BT.601) of the frame, `dark` is brightness below
`--dark-threshold`, `motion` the mean absolute luma difference to the previous
frame of the same camera (null for a camera's first frame), as a fraction of 255.

Started by the daemon as `<command>` (`workers.scene_brightness.command`), with
optional `--dark-threshold N` and `--grid N` (one pixel in N per direction).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from . import protocol
from .geometry import Crop
from .sdk import Worker, serve, start_worker

log = logging.getLogger("orion_worker.scene_brightness")

#: Cameras whose previous frame is kept for the motion level (oldest forgotten).
MAX_CAMERAS = 64
#: BT.601 luma weights of R, G, B.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class SceneBrightness(Worker):
    inference_type = "scene_brightness"

    def __init__(self, dark_threshold: float = 40.0, grid: int = 4) -> None:
        self.dark_threshold = float(dark_threshold)
        self.grid = max(1, int(grid))
        self.previous: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def model_info(self) -> dict[str, Any]:
        return protocol.model_info("luma", 0)

    def measure(self, image: np.ndarray, camera: str) -> dict[str, Any]:
        """Brightness, darkness and motion of one full frame of `camera`."""
        small = image[:: self.grid, :: self.grid, :3].astype(np.float32)
        luma = small @ LUMA
        brightness = float(luma.mean())
        before = self.previous.pop(camera, None)
        motion = None
        if before is not None and before.shape == luma.shape:
            motion = float(np.abs(luma - before).mean() / 255.0)
        self.previous[camera] = luma
        while len(self.previous) > MAX_CAMERAS:
            self.previous.popitem(last=False)
        return {
            "brightness": round(brightness, 2),
            "dark": brightness < self.dark_threshold,
            "motion": None if motion is None else round(motion, 4),
        }

    def process(self, image: np.ndarray, crop: Crop, frame: dict[str, Any]) -> dict[str, Any]:
        # The whole frame always: a crop chosen for people says nothing of the room.
        started = time.perf_counter()
        meta = frame.get("meta") or {}
        data = self.measure(image, str(meta.get("instance_id", "")))
        total = (time.perf_counter() - started) * 1e3
        return protocol.result(
            frame_seq=frame.get("seq", 0),
            trace_id=str(meta.get("trace_id", "")),
            inference_type=self.inference_type,
            detections=[],
            model=self.model_info(),
            timing=protocol.timing(0.0, total, 0.0, total),
            suggested_roi=None,
            data=data,
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="orion-scene-brightness", description=__doc__)
    p.add_argument("--dark-threshold", type=float, default=40.0, help="mean luma below this is dark (0..255)")
    p.add_argument("--grid", type=int, default=4, help="sample one pixel in N per direction")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = start_worker(args.log_level)
    log.info("scene brightness ready (dark below %.0f, grid %d)", args.dark_threshold, args.grid)
    return serve(SceneBrightness(args.dark_threshold, args.grid), stdout=out)


if __name__ == "__main__":
    sys.exit(main())
