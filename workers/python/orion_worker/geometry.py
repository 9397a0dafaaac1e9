"""Geometry shared by detectors: crops, mapping back to the full frame, NMS,
suggested ROI. Boxes are numpy arrays of [x1, y1, x2, y2] in pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class Crop:
    """A crop of the full frame, in full-frame pixels."""

    x: int
    y: int
    width: int
    height: int

    @staticmethod
    def from_roi(roi: Optional[dict[str, Any]], frame_width: int, frame_height: int) -> "Crop":
        """The crop of `roi_processing`, clamped to the frame; full frame if absent."""
        if not roi or "crop" not in roi:
            return Crop(0, 0, frame_width, frame_height)
        c = roi["crop"]
        x = min(max(int(c["x"]), 0), frame_width - 1)
        y = min(max(int(c["y"]), 0), frame_height - 1)
        w = min(max(int(c["width"]), 1), frame_width - x)
        h = min(max(int(c["height"]), 1), frame_height - y)
        return Crop(x, y, w, h)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y : self.y + self.height, self.x : self.x + self.width]


def crop_to_frame(boxes: np.ndarray, crop: Crop) -> np.ndarray:
    """Shifts boxes given in crop pixels to full-frame pixels, clipped to the crop."""
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, crop.width) + crop.x
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, crop.height) + crop.y
    return out


def keypoints_to_frame(keypoints: np.ndarray, crop: Crop, k: int = 0) -> np.ndarray:
    """Keypoints (n, 17, 3: x, y, score) found in the crop's image, turned by
    `np.rot90(image, k)` when `k` is 1 or -1 (see `turned_back`), in
    full-frame pixels; scores unchanged."""
    out = np.asarray(keypoints, dtype=np.float64).copy()
    if out.size == 0:
        return out.reshape(0, 17, 3)
    x, y = out[..., 0].copy(), out[..., 1].copy()
    w, h = crop.width, crop.height
    if k == 1:
        x, y = w - y, x
    elif k == -1:
        x, y = y, h - x
    elif k != 0:
        raise ValueError(f"k must be 0, 1 or -1, got {k}")
    out[..., 0] = np.clip(x, 0, w) + crop.x
    out[..., 1] = np.clip(y, 0, h) + crop.y
    return out


def look_crops(areas: Any, frame_width: int, frame_height: int) -> list[Crop]:
    """Look areas of a frame's meta (`rest_areas`, `exit_areas`: normalized
    rects) as crops in pixels; malformed entries are skipped (at most 16)."""
    crops: list[Crop] = []
    if not isinstance(areas, list):
        return crops
    for a in areas[:16]:
        try:
            x, y = float(a["x"]) * frame_width, float(a["y"]) * frame_height
            w, h = float(a["width"]) * frame_width, float(a["height"]) * frame_height
        except (KeyError, TypeError, ValueError):
            continue
        if not all(np.isfinite([x, y, w, h])) or w < 8 or h < 8:
            continue
        crops.append(Crop.from_roi({"crop": {"x": x, "y": y, "width": w, "height": h}}, frame_width, frame_height))
    return crops


def turned_back(boxes: np.ndarray, crop: Crop, k: int) -> np.ndarray:
    """Boxes found in `np.rot90(crop_image, k)` (k = 1: turned a quarter
    counter-clockwise, k = -1: clockwise) in full-frame pixels."""
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    b = boxes.astype(np.float64)
    out = np.empty_like(b)
    w, h = crop.width, crop.height
    if k == 1:
        # A point (x', y') of the turned image was (w - y', x').
        out[:, 0], out[:, 2] = w - b[:, 3], w - b[:, 1]
        out[:, 1], out[:, 3] = b[:, 0], b[:, 2]
    elif k == -1:
        # A point (x', y') of the turned image was (y', h - x').
        out[:, 0], out[:, 2] = b[:, 1], b[:, 3]
        out[:, 1], out[:, 3] = h - b[:, 2], h - b[:, 0]
    else:
        raise ValueError(f"k must be 1 or -1, got {k}")
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w) + crop.x
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h) + crop.y
    return out


def overlapping(boxes: np.ndarray, others: np.ndarray, share: float) -> np.ndarray:
    """For each of `boxes`, whether at least `share` of its area lies inside
    one of `others`."""
    out = np.zeros(len(boxes), dtype=bool)
    for o in others:
        w = np.clip(np.minimum(boxes[:, 2], o[2]) - np.maximum(boxes[:, 0], o[0]), 0, None)
        h = np.clip(np.minimum(boxes[:, 3], o[3]) - np.maximum(boxes[:, 1], o[1]), 0, None)
        area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
        out |= w * h / area >= share
    return out


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def final_boxes(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5, contained: float = 0.8) -> np.ndarray:
    """Indices of the boxes to report, best first: class-agnostic non-maximum
    suppression on the final (full-frame) boxes, then a box mostly inside a
    better one (`contained` of its area) is dropped too: a part of a person found
    next to the whole person (a crop edge, another model scale) is not a second
    person."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    kept = nms(boxes, scores, iou_threshold)
    # Largest first: the whole person is kept, the part inside it dropped,
    # whichever scored higher.
    areas = (boxes[kept, 2] - boxes[kept, 0]) * (boxes[kept, 3] - boxes[kept, 1])
    out: list[int] = []
    for i in kept[np.argsort(-areas, kind="stable")]:
        b = boxes[i]
        area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
        inside = False
        for j in out:
            o = boxes[j]
            w = max(0.0, min(b[2], o[2]) - max(b[0], o[0]))
            h = max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
            if w * h / area >= contained:
                inside = True
                break
        if not inside:
            out.append(int(i))
    # Best first, as the detector reported them.
    out.sort(key=lambda i: -float(scores[i]))
    return np.array(out, dtype=np.int64)


def suggested_roi(boxes: np.ndarray, frame_width: int, frame_height: int, expand: float = 0.15) -> Optional[dict[str, float]]:
    """All boxes merged, grown by `expand` of their size (centered), normalized and
    clipped to the frame; None without boxes."""
    if boxes.size == 0:
        return None
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max(), boxes[:, 3].max()
    dx, dy = (x2 - x1) * expand / 2, (y2 - y1) * expand / 2
    nx1, ny1 = max(0.0, (x1 - dx) / frame_width), max(0.0, (y1 - dy) / frame_height)
    nx2, ny2 = min(1.0, (x2 + dx) / frame_width), min(1.0, (y2 + dy) / frame_height)
    return {"x": float(nx1), "y": float(ny1), "width": float(nx2 - nx1), "height": float(ny2 - ny1)}


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an HxWxC uint8 image (pixel-center aligned), vectorized."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    ys = (np.arange(height, dtype=np.float32) + 0.5) * (h / height) - 0.5
    xs = (np.arange(width, dtype=np.float32) + 0.5) * (w / width) - 0.5
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
