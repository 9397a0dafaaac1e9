"""Makes the scene videos of the presence tests from a real photo of a person
(the astronaut portrait of the test images): 640x480, 15 fps, H.264 in MP4
(gst-launch-1.0 with x264enc).

    scene_video.py OUTPUT bed [--night] [--lying-s S] [--asleep]
        A room with a bed: empty, a person walks in from the left, stands beside
        the bed, lies on it (the portrait turned a quarter), sits up at its
        left side, gets up, stands beside it and walks out to the left; empty
        again. --asleep: only the
        person lying on the bed, all along.
    scene_video.py OUTPUT edge [--visible F] [--stay-s S]
        A person slides in at the left edge and stays there only a fraction F
        in view (a doorway), then slides out.
    scene_video.py OUTPUT picture
        A framed picture of a person (the cameraman portrait) on the wall all
        along; a resident walks in from the left, stands, and walks out.

    scene_video.py OUTPUT fall [--lying-s S] [--get-up]
        A real room (the empty room of the test images) with a real person
        (a walker photographed in it): empty, the person walks in from the
        left, stands, falls over sideways within 0.8 s and lies on the floor;
        --get-up: gets up again, stands and walks out.

    scene_video.py OUTPUT care [--lying-s S]
        The demo (scripts/make-demo-video.py): the real room with a bed; empty,
        the person walks in from the left to the bed, lies on it, sits up at its
        side, gets up, walks out to the left; empty long enough for the room to
        be reported empty before the video loops.

--night: the same scene grayscale, darker and noisy (an infrared camera).
--frames DIR: also writes every 15th frame as DIR/NNNN.png (for measuring).

Prints one JSON line: the seconds at which each part starts, and the bed
(normalized) for the bed scene.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from visit_video import FPS, HEIGHT, WIDTH, background, encoder

IMAGES = Path(__file__).resolve().parents[3] / "workers" / "python" / "tests" / "images"
SIZE = 240
BED = (240, 250, 380, 190)  # x, y, width, height in pixels
TOP = HEIGHT - SIZE - 20


def portrait(name: str, width: int, height: int, turn: int = 0) -> np.ndarray:
    img = np.asarray(Image.open(IMAGES / name).convert("RGB"))
    if turn:
        img = np.ascontiguousarray(np.rot90(img, turn))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def paste(frame: np.ndarray, img: np.ndarray, x: int, y: int) -> None:
    """`img` with its top left at (x, y), cut by the frame's edges."""
    h, w = img.shape[:2]
    x0, x1 = max(x, 0), min(x + w, WIDTH)
    y0, y1 = max(y, 0), min(y + h, HEIGHT)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = img[y0 - y : y1 - y, x0 - x : x1 - x]


def play(parts: list[tuple[str, float]], draw, write) -> dict:
    """Writes each part (`kind`, seconds) frame by frame: `draw(kind, f)`
    gives the frame at fraction `f` (0..1) of the part. The second at which
    each kind first starts."""
    starts: dict[str, float] = {}
    t = 0.0
    for kind, seconds in parts:
        starts.setdefault(kind, t)
        n = int(round(seconds * FPS))
        for i in range(n):
            write(draw(kind, i / max(n - 1, 1)))
        t += seconds
    starts["end"] = t
    return starts


def room_with_bed() -> np.ndarray:
    frame = background()
    x, y, w, h = BED
    frame[y + 20 : y + h, x : x + w] = (150, 110, 80)  # frame of the bed
    frame[y : y + h - 30, x + 10 : x + w - 10] = (232, 232, 240)  # sheets
    frame[y + 10 : y + 60, x + w - 90 : x + w - 20] = (250, 250, 252)  # pillow
    return frame


def bed(args: argparse.Namespace, write) -> dict:
    standing = portrait("astronaut.png", SIZE, SIZE)
    bx, by, bw, bh = BED
    lying = portrait("astronaut.png", bw - 40, bh - 40, turn=1)
    room = room_with_bed()
    beside = 60  # standing in front of the bed's left end
    parts = [("empty", 2.0), ("in", 2.0), ("stand", 2.0), ("lie", args.lying_s), ("sit", 2.0), ("up", 3.0), ("out", 2.0), ("empty", 4.0)]
    if args.asleep:
        parts = [("lie", args.lying_s)]

    def draw(kind: str, f: float) -> np.ndarray:
        frame = room.copy()
        if kind == "in":
            paste(frame, standing, int(-SIZE + f * (beside + SIZE)), TOP)
        elif kind in ("stand", "up"):
            paste(frame, standing, beside, TOP)
        elif kind == "lie":
            paste(frame, lying, bx + 20, by + 5)
        elif kind == "sit":
            # Upright at the bed's left side, still on it.
            paste(frame, standing, bx - 40, by + bh - 10 - SIZE)
        elif kind == "out":
            paste(frame, standing, int(beside - f * (beside + SIZE)), TOP)
        return frame

    starts = play(parts, draw, write)
    t = starts["end"]
    info = {"duration_s": t, "lying_s": starts["lie"]}
    if not args.asleep:
        info.update(in_view_s=starts["in"] + 2.0, sit_s=starts["sit"], up_s=starts["up"], gone_s=starts["out"] + 2.0)
    info["bed"] = {"x": bx / WIDTH, "y": by / HEIGHT, "width": bw / WIDTH, "height": bh / HEIGHT}
    return info


def edge(args: argparse.Namespace, write) -> dict:
    person = portrait("astronaut.png", SIZE, SIZE)
    room = background()
    shown = int(SIZE * args.visible)
    parts = [("empty", 2.0), ("in", 1.0), ("stay", args.stay_s), ("out", 1.0), ("empty", 4.0)]

    def draw(kind: str, f: float) -> np.ndarray:
        frame = room.copy()
        if kind == "in":
            paste(frame, person, int(-SIZE + f * shown), TOP)
        elif kind == "stay":
            paste(frame, person, shown - SIZE, TOP)
        elif kind == "out":
            paste(frame, person, int(shown - SIZE - f * shown), TOP)
        return frame

    starts = play(parts, draw, write)
    t = starts["end"]
    door = {"x": 0.0, "y": 0.3, "width": 0.3, "height": 0.7}
    return {"in_view_s": starts["stay"], "gone_s": starts["out"], "duration_s": t, "visible": args.visible, "door": door}


def picture(args: argparse.Namespace, write) -> dict:
    resident = portrait("astronaut.png", SIZE, SIZE)
    room = background()
    px, py, ps = 420, 60, 150
    room[py - 6 : py + ps + 6, px - 6 : px + ps + 6] = (60, 40, 30)  # the frame
    paste(room, portrait("camera.png", ps, ps), px, py)
    spot = 60
    parts = [("empty", 2.0), ("in", 2.0), ("stand", 8.0), ("out", 2.0), ("empty", 6.0)]

    def draw(kind: str, f: float) -> np.ndarray:
        frame = room.copy()
        if kind == "in":
            paste(frame, resident, int(-SIZE + f * (spot + SIZE)), TOP)
        elif kind == "stand":
            paste(frame, resident, spot, TOP)
        elif kind == "out":
            paste(frame, resident, int(spot - f * (spot + SIZE)), TOP)
        return frame

    starts = play(parts, draw, write)
    t = starts["end"]
    pad = 0.04
    picture_rect = {
        "x": px / WIDTH - pad,
        "y": py / HEIGHT - pad,
        "width": ps / WIDTH + 2 * pad,
        "height": ps / HEIGHT + 2 * pad,
    }
    return {"in_view_s": starts["stand"], "gone_s": starts["out"] + 2.0, "duration_s": t, "picture": picture_rect}


def room_photo() -> np.ndarray:
    room = Image.open(IMAGES / "room.png").convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
    return np.asarray(room).copy()


def turned(img: Image.Image, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """`img` turned clockwise by `degrees` (canvas grown to fit): the pixels
    and the mask of where the person is."""
    rgba = img.convert("RGBA")
    out = rgba.rotate(-degrees, resample=Image.BILINEAR, expand=True)
    a = np.asarray(out)
    return a[:, :, :3], a[:, :, 3] > 128


def paste_masked(frame: np.ndarray, img: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(x, 0), min(x + w, WIDTH)
    y0, y1 = max(y, 0), min(y + h, HEIGHT)
    if x1 <= x0 or y1 <= y0:
        return
    part, m = img[y0 - y : y1 - y, x0 - x : x1 - x], mask[y0 - y : y1 - y, x0 - x : x1 - x]
    frame[y0:y1, x0:x1][m] = part[m]


def fall(args: argparse.Namespace, write) -> dict:
    photo = Image.open(IMAGES / "walker_dark.png").convert("RGB")
    height = 300
    person = photo.resize((round(photo.width * height / photo.height), height), Image.BILINEAR)
    room = room_photo()
    floor, spot = 460, 180
    parts = [("empty", 2.0), ("in", 2.0), ("stand", 3.0), ("fall", 0.8), ("down", args.lying_s)]
    if args.get_up:
        parts += [("rise", 1.0), ("again", 4.0), ("out", 2.0), ("empty", 4.0)]

    def at_angle(frame: np.ndarray, degrees: float, x: int) -> None:
        img, mask = turned(person, degrees)
        paste_masked(frame, img, mask, x, floor - img.shape[0])

    def draw(kind: str, f: float) -> np.ndarray:
        frame = room.copy()
        w = person.width
        if kind == "in":
            at_angle(frame, 0, int(-w + f * (spot + w)))
        elif kind in ("stand", "again"):
            at_angle(frame, 0, spot)
        elif kind == "fall":
            at_angle(frame, 90 * f, spot)
        elif kind == "down":
            at_angle(frame, 90, spot)
        elif kind == "rise":
            at_angle(frame, 90 * (1 - f), spot)
        elif kind == "out":
            at_angle(frame, 0, int(spot - f * (spot + w)))
        return frame

    starts = play(parts, draw, write)
    info = {"duration_s": starts["end"], "in_view_s": starts["in"] + 2.0, "fall_s": starts["fall"], "down_s": starts["down"]}
    if args.get_up:
        info.update(up_s=starts["again"], gone_s=starts["out"] + 2.0)
    return info


# The demo's bed in the room photo: x, y, width, height in pixels (the mattress).
CARE_BED = (340, 310, 290, 100)


def room_with_a_bed(room: np.ndarray) -> np.ndarray:
    frame = room.copy()
    x, y, w, h = CARE_BED
    frame[y + 30 : y + h + 50, x : x + w] = (120, 85, 60)  # the frame and its legs' shadow
    frame[y + h + 50 : y + h + 60, x + 10 : x + w - 10] = (60, 45, 35)
    frame[y : y + h, x + 6 : x + w - 6] = (226, 228, 236)  # sheets
    frame[y + 8 : y + 40, x + w - 80 : x + w - 16] = (248, 248, 250)  # pillow
    frame[y - 60 : y + h + 50, x + w - 12 : x + w] = (100, 70, 50)  # headboard
    return frame


def care(args: argparse.Namespace, write) -> dict:
    photo = Image.open(IMAGES / "walker_dark.png").convert("RGB")
    height = 300
    person = photo.resize((round(photo.width * height / photo.height), height), Image.BILINEAR)
    room = room_with_a_bed(room_photo())
    bx, by, bw, bh = CARE_BED
    floor, spot = 470, bx - person.width - 10
    lying_img, lying_mask = turned(person.resize((round(person.width * 0.85), round(height * 0.85))), 90)
    sitting = person.resize((round(person.width * 0.8), round(height * 0.8)))
    parts = [("empty", 3.0), ("in", 3.0), ("stand", 2.0), ("lie", args.lying_s), ("sit", 3.0), ("up", 3.0), ("out", 3.0), ("empty", 18.0)]

    def draw(kind: str, f: float) -> np.ndarray:
        frame = room.copy()
        w = person.width
        upright, mask = turned(person, 0)
        if kind == "in":
            paste_masked(frame, upright, mask, int(-w + f * (spot + w)), floor - height)
        elif kind in ("stand", "up"):
            paste_masked(frame, upright, mask, spot, floor - height)
        elif kind == "lie":
            paste_masked(frame, lying_img, lying_mask, bx + 8, by + bh - 20 - lying_img.shape[0])
        elif kind == "sit":
            img, m = turned(sitting, 0)
            paste_masked(frame, img, m, bx - 20, by + bh + 20 - img.shape[0])
        elif kind == "out":
            paste_masked(frame, upright, mask, int(spot - f * (spot + w)), floor - height)
        return frame

    starts = play(parts, draw, write)
    info = {"duration_s": starts["end"], "in_view_s": starts["in"] + 3.0, "lying_s": starts["lie"], "up_s": starts["up"], "gone_s": starts["out"] + 3.0}
    pad = 0.03
    info["bed"] = {
        "x": round(bx / WIDTH - pad, 3),
        "y": round((by - 90) / HEIGHT, 3),
        "width": round(bw / WIDTH + pad, 3),
        "height": round((bh + 90) / HEIGHT + pad, 3),
    }
    return info


def night(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gray = frame.astype(np.float32).mean(axis=2, keepdims=True) * 0.7
    gray = gray + rng.normal(0, 4, gray.shape)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8), 3, axis=2)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("output")
    p.add_argument("scene", choices=["bed", "edge", "picture", "fall", "care"])
    p.add_argument("--get-up", action="store_true")
    p.add_argument("--night", action="store_true")
    p.add_argument("--lying-s", type=float, default=16.0)
    p.add_argument("--asleep", action="store_true")
    p.add_argument("--visible", type=float, default=0.6)
    p.add_argument("--stay-s", type=float, default=12.0)
    p.add_argument("--frames", type=Path)
    args = p.parse_args()
    proc = subprocess.Popen(encoder(args.output), stdin=subprocess.PIPE)
    rng = np.random.default_rng(7)
    count = [0]

    def write(frame: np.ndarray) -> None:
        if args.night:
            frame = night(frame, rng)
        if args.frames and count[0] % FPS == 0:
            args.frames.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(args.frames / f"{count[0] // FPS:04d}.png")
        count[0] += 1
        proc.stdin.write(frame.tobytes())

    info = {"bed": bed, "edge": edge, "picture": picture, "fall": fall, "care": care}[args.scene](args, write)
    proc.stdin.close()
    code = proc.wait()
    print(json.dumps(info))
    return code


if __name__ == "__main__":
    sys.exit(main())
