#!/usr/bin/env python3
"""Makes the two shipped videos, 640x480, 15 fps, H.264 in MP4:

- assets/demo.mp4, the looping demo of the default config (47 s): a real
  room with a bed; empty, then a person walks in, lies on the bed, sits up at
  its side, gets up and walks out, and the room stays empty long enough to be
  reported empty before the loop starts again. Made by the tests' scene maker
  (`crates/orion/tests/scene_video.py OUTPUT care`) from the room and the
  person photographed in it (frames of Intel's sample video, CC-BY-4.0); it
  prints the bed's rectangle, which is the bed zone of config/orion.yaml.
- assets/walking.mp4 (8 s): a person (the NASA astronaut portrait, public
  domain) walking slowly left and right in front of a plain room, in view all
  along: the tests', benchmarks' and corridor example's camera.

Needs numpy and Pillow (the project venv has both) and gst-launch-1.0 with
x264enc (gstreamer1.0-plugins-ugly).

    .venv/bin/python scripts/make-demo-video.py [ASSETS_DIR]
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 15, 8
PERSON = ROOT / "workers" / "python" / "tests" / "images" / "astronaut.png"


def background() -> np.ndarray:
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    wall = np.array([205, 200, 185]) * (1 - 0.25 * y)
    img = np.broadcast_to(wall, (HEIGHT, WIDTH, 3)).copy()
    img[int(HEIGHT * 0.78) :] = (120, 95, 70)  # floor
    img[60:200, 420:560] = (150, 180, 210)  # window
    return img.astype(np.uint8)


def care_scene(out: Path) -> int:
    scenes = ROOT / "crates" / "orion" / "tests" / "scene_video.py"
    return subprocess.call([sys.executable, str(scenes), str(out), "care", "--lying-s", "12"])


def main() -> int:
    assets = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets"
    code = care_scene(assets / "demo.mp4")
    return code or walking(assets / "walking.mp4")


def walking(out: Path) -> int:
    size = 360
    person = np.asarray(Image.open(PERSON).convert("RGB").resize((size, size), Image.BILINEAR))
    bg = background()
    frames = FPS * SECONDS
    cmd = [
        "gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
        "rawvideoparse", f"width={WIDTH}", f"height={HEIGHT}", "format=rgb", f"framerate={FPS}/1", "!",
        "videoconvert", "!", "video/x-raw,format=I420", "!",
        "x264enc", "bitrate=400", "speed-preset=slow", "key-int-max=30", "!",
        "mp4mux", "!", "filesink", f"location={out}",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for i in range(frames):
        # Smooth back-and-forth walk that ends where it starts, so the loop is seamless.
        phase = math.sin(2 * math.pi * i / frames)
        x = int((WIDTH - size) / 2 + phase * (WIDTH - size) / 2)
        y = HEIGHT - size - 20
        frame = bg.copy()
        frame[y : y + size, x : x + size] = person
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
