"""Makes the visit video of the signals tests: an empty room, a person (the
astronaut portrait of the test images) walks in from the left, stands still in
the middle, walks out to the right, and the room is empty again. 640x480, 15 fps,
H.264 in MP4 (gst-launch-1.0 with x264enc).

    visit_video.py OUTPUT [EMPTY_S WALK_S STAND_S WALK_S EMPTY_S]
    visit_video.py OUTPUT --two      (two people in view together for 8 s)

Prints one JSON line: the seconds at which the person is fully in view, starts
walking out, and is gone, and where they stand (bottom centre, normalized).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT, FPS = 640, 480, 15
SIZE = 300
PERSON = Path(__file__).resolve().parents[3] / "workers" / "python" / "tests" / "images" / "astronaut.png"


def background() -> np.ndarray:
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    wall = np.array([205, 200, 185]) * (1 - 0.25 * y)
    img = np.broadcast_to(wall, (HEIGHT, WIDTH, 3)).copy()
    img[int(HEIGHT * 0.78) :] = (120, 95, 70)
    return img.astype(np.uint8)


def two_people(out: str) -> int:
    """3 s empty, two people side by side for 8 s, 8 s empty."""
    person = np.asarray(Image.open(PERSON).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    bg = background()
    top = HEIGHT - SIZE - 30
    proc = subprocess.Popen(encoder(out), stdin=subprocess.PIPE)
    for second in range(19):
        frame = bg.copy()
        if 3 <= second < 11:
            frame[top : top + SIZE, 10 : 10 + SIZE] = person
            frame[top : top + SIZE, 330 : 330 + SIZE] = person
        for _ in range(FPS):
            proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    code = proc.wait()
    print(json.dumps({"in_view_s": 3, "gone_s": 11, "duration_s": 19}))
    return code


def encoder(out: str) -> list[str]:
    return [
        "gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
        "rawvideoparse", f"width={WIDTH}", f"height={HEIGHT}", "format=rgb", f"framerate={FPS}/1", "!",
        "videoconvert", "!", "video/x-raw,format=I420", "!",
        "x264enc", "bitrate=600", "speed-preset=veryfast", "key-int-max=15", "!",
        "mp4mux", "!", "filesink", f"location={out}",
    ]


def main() -> int:
    out = sys.argv[1]
    if sys.argv[2:3] == ["--two"]:
        return two_people(out)
    empty1, walk_in, stand, walk_out, empty2 = (float(a) for a in (sys.argv[2:7] or [3, 3, 6, 3, 9]))
    person = np.asarray(Image.open(PERSON).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    bg = background()
    spot = (WIDTH - SIZE) // 2
    top = HEIGHT - SIZE - 30
    proc = subprocess.Popen(encoder(out), stdin=subprocess.PIPE)
    t = 0.0
    segments = [("empty", empty1), ("in", walk_in), ("stand", stand), ("out", walk_out), ("empty", empty2)]
    for kind, seconds in segments:
        n = int(round(seconds * FPS))
        for i in range(n):
            frame = bg.copy()
            f = i / max(n - 1, 1)
            if kind == "in":
                x = int(-SIZE + f * (spot + SIZE))
            elif kind == "stand":
                x = spot
            elif kind == "out":
                x = int(spot + f * (WIDTH - spot))
            else:
                x = None
            if x is not None:
                x0, x1 = max(x, 0), min(x + SIZE, WIDTH)
                if x1 > x0:
                    frame[top : top + SIZE, x0:x1] = person[:, x0 - x : x1 - x]
            proc.stdin.write(frame.tobytes())
        t += seconds
    proc.stdin.close()
    code = proc.wait()
    print(json.dumps({
        "in_view_s": empty1 + walk_in,
        "leaving_s": empty1 + walk_in + stand,
        "gone_s": empty1 + walk_in + stand + walk_out,
        "duration_s": t,
        "spot": {"x": (spot + SIZE / 2) / WIDTH, "y": (top + SIZE) / HEIGHT},
    }))
    return code


if __name__ == "__main__":
    sys.exit(main())
