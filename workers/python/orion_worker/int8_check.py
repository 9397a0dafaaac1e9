"""Whether a quantized (INT8) model finds the same people as its FP32
original: the check that `models/quantize.py` runs, and the record it writes
beside the INT8 model (`int8_record` reads it).

Owns the labelled scenes, the still clips' steadiness and the verdict. It
never runs in a worker that serves frames, and never decides speed (that is
`runtime_choice`'s measurement).

The check runs both models on labelled frames grouped in sets (people
standing, sitting, lying, half in view, at night; nobody there). A frame with
people is found when the model finds at least as many people as the frame
has; a frame of nobody is a false positive when the model finds anyone. INT8
passes when, in every set, it finds at least as many frames as FP32 less
`ALLOWED_LOSS` of the set (rounded down: none in a small set), and has no more
false positives than FP32.

It also runs both on clips of people standing still (H.264, so every frame
differs a little, as a camera's do): the box of someone who does
not move must not move either, or the room never sees them still (the
"something never moves" hint) and posture flickers. INT8 passes when its box
moves between frames (90th percentile, in parts of the box's size) at most
`STEADY_FACTOR` times FP32's. Measured: fully quantized, INT8 boxes moved 4x to
17x more than FP32's on such clips; the tracker takes a box that moves more
than 2 % of its size for someone who moved.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from .int8_record import record_path
from .runtime_choice import file_digest

ALLOWED_LOSS = 0.02
STEADY_FACTOR = 2.0
STILL_FRAMES = 30


class Finds(Protocol):
    def detect(self, crop: np.ndarray, confidence: float): ...


@dataclass
class Labelled:
    set: str  # standing | sitting | lying | partly | night | nobody ...
    image: np.ndarray  # HxWx3 uint8 RGB
    people: int


def _paste(room: np.ndarray, person: np.ndarray, x: int, bottom: int) -> np.ndarray:
    """`person` pasted with its bottom-left corner at (x, bottom); what
    falls outside the frame is cut off."""
    out = room.copy()
    h, w = person.shape[:2]
    top = bottom - h
    fx0, fy0 = max(0, x), max(0, top)
    fx1, fy1 = min(out.shape[1], x + w), min(out.shape[0], bottom)
    if fx1 > fx0 and fy1 > fy0:
        out[fy0:fy1, fx0:fx1] = person[fy0 - top : fy1 - top, fx0 - x : fx1 - x]
    return out


def _night(frame: np.ndarray, seed: int) -> np.ndarray:
    """An infrared-like night frame: grey, dim, noisy."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.35
    grey += np.random.default_rng(seed).normal(0, 6, grey.shape)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def labelled_scenes(images: Path) -> list[Labelled]:
    """The labelled set made of the project's own test photos (all of them
    free to ship): people standing, lying on the floor (a standing photo
    turned a quarter), half out of the frame, the same at night, and
    frames of nobody."""
    import cv2

    def load(name: str) -> np.ndarray:
        image = cv2.imread(str(images / name))
        if image is None:
            raise FileNotFoundError(images / name)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def scaled(img: np.ndarray, height: int) -> np.ndarray:
        return cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height))

    room = cv2.resize(load("room.png"), (640, 480))
    walkers = [load("walker_dark.png"), load("walker_grey.png")]
    out: list[Labelled] = []
    for name in ("astronaut.png", "camera.png"):
        out.append(Labelled("standing", load(name), 1))
    for w in walkers:
        for height in (300, 380):
            for x in (80, 300, 480):
                out.append(Labelled("standing", _paste(room, scaled(w, height), x, 470), 1))
    for w in walkers:
        for k in (1, -1):
            lying = np.ascontiguousarray(np.rot90(scaled(w, 260), k))
            for x in (40, 320):
                out.append(Labelled("lying", _paste(room, lying, x, 465), 1))
    for w in walkers:
        person = scaled(w, 360)
        pw = person.shape[1]
        for x, bottom in ((-pw // 2, 470), (640 - pw // 2, 470), (260, 480 + 150)):
            out.append(Labelled("partly", _paste(room, person, x, bottom), 1))
    night = [f for f in out if f.set in ("standing", "lying") and f.image.shape[:2] == (480, 640)]
    for i, f in enumerate(night[::2]):
        out.append(Labelled("night", _night(f.image, i), 1))
    for name in ("room.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        out.append(Labelled("nobody", load(name), 0))
    out.append(Labelled("nobody", _night(room, 99), 0))
    out.append(Labelled("nobody", np.ascontiguousarray(room[:, ::-1]), 0))
    return out


def still_clips(clip: Path, length: int = STILL_FRAMES) -> list[list[np.ndarray]]:
    """The frames of `clip` (H.264, as cameras send: `models/check/still_people.mp4`,
    four people standing still one after the other, 30 frames each), cut into
    clips of `length` frames."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < length:
        raise RuntimeError(f"cannot read the still clip {clip} ({len(frames)} frames)")
    return [frames[i : i + length] for i in range(0, len(frames) - length + 1, length)]


def steadiness(model: Finds, clips: list[list[np.ndarray]], confidence: float) -> dict[str, float]:
    """How far the most confident box moves between frames of a still clip:
    the 90th percentile of the largest edge move over the box's size."""
    moves: list[float] = []
    for frames in clips:
        boxes = []
        for frame in frames:
            found = model.detect(frame, confidence)
            if len(found.scores):
                boxes.append(found.boxes[int(np.argmax(found.scores))])
        if len(boxes) < 2:
            continue
        b = np.array(boxes)
        size = float(((b[:, 2] - b[:, 0]) + (b[:, 3] - b[:, 1])).mean() / 2)
        moves += list(np.abs(np.diff(b, axis=0)).max(axis=1) / max(size, 1.0))
    return {"pairs": len(moves), "move_p90": float(np.percentile(moves, 90)) if moves else float("nan")}


def compare_steadiness(fp32: Finds, int8: Finds, clips: list[list[np.ndarray]], confidence: float) -> dict[str, dict[str, float]]:
    return {"fp32": steadiness(fp32, clips, confidence), "int8": steadiness(int8, clips, confidence)}


def steady_verdict(steady: dict[str, dict[str, float]]) -> list[str]:
    a, b = steady["fp32"]["move_p90"], steady["int8"]["move_p90"]
    if not np.isfinite(b) or b > STEADY_FACTOR * a:
        return [f"still people: INT8 boxes move {b:.4f} of their size between frames (p90), FP32 {a:.4f} (at most {STEADY_FACTOR:g}x allowed)"]
    return []


def compare(fp32: Finds, int8: Finds, frames: Iterable[Labelled], confidence: float) -> dict[str, dict[str, int]]:
    """Per set: frames, and for each model frames found (or, for sets of
    nobody, false positives)."""
    sets: dict[str, dict[str, int]] = {}
    for f in frames:
        s = sets.setdefault(f.set, {"frames": 0, "people": f.people, "fp32": 0, "int8": 0})
        s["frames"] += 1
        s["people"] = max(s["people"], f.people)
        for name, model in (("fp32", fp32), ("int8", int8)):
            n = len(model.detect(f.image, confidence).scores)
            s[name] += int(n > 0) if f.people == 0 else int(n >= f.people)
    return sets


def verdict(sets: dict[str, dict[str, int]]) -> list[str]:
    """Why INT8 fails the check (empty: it passes)."""
    why = []
    for name, s in sorted(sets.items()):
        if s["people"] == 0:
            if s["int8"] > s["fp32"]:
                why.append(f"{name}: {s['int8']} false positives in {s['frames']} frames, FP32 {s['fp32']}")
        else:
            allowed = math.floor(ALLOWED_LOSS * s["frames"])
            if s["int8"] < s["fp32"] - allowed:
                why.append(f"{name}: found {s['int8']} of {s['frames']} frames, FP32 {s['fp32']} (at most {allowed} fewer allowed)")
    return why


def write_record(fp32_path: str, int8_path: str, sets: dict[str, dict[str, int]], confidence: float, steady: dict[str, dict[str, float]] | None = None) -> dict:
    why = verdict(sets) + (steady_verdict(steady) if steady is not None else [])
    record = {
        "fp32": Path(fp32_path).name,
        "fp32_sha256": file_digest(fp32_path),
        "int8": Path(int8_path).name,
        "int8_sha256": file_digest(int8_path),
        "confidence": confidence,
        "sets": sets,
        "still": steady,
        "passed": not why,
        "failures": why,
        "checked_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    record_path(int8_path).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
