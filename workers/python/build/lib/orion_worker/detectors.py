"""ONNX Runtime person detectors.

Two output layouts are understood:
- `ssd`: the TF Object Detection API export (the shipped SSDLite-MobileNetV2 COCO):
  input uint8 NHWC of any size (the graph resizes to 300x300 itself), outputs num_detections,
  detection_scores, detection_boxes [ymin, xmin, ymax, xmax] normalized,
  detection_classes (1 = person).
- `yolo`: Ultralytics v8/11 export: input float32 NCHW [1, 3, S, S] in 0..1,
  letterboxed; output [1, 4 + classes, N] with cx, cy, w, h in input pixels and
  per-class scores (class 0 = person).

A detector takes the crop (HxWx3 uint8 RGB) and returns boxes in crop pixels
[x1, y1, x2, y2] with scores, persons only, above the confidence threshold.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort

from .geometry import nms, resize_bilinear


@dataclass
class Detections:
    boxes: np.ndarray  # (n, 4) float64, crop pixels
    scores: np.ndarray  # (n,) float64
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


class Detector(Protocol):
    name: str
    input_size: int

    def detect(self, crop: np.ndarray, confidence: float) -> Detections: ...


def make_session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # GPU execution providers are used when this onnxruntime build has them.
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in preferred if p in ort.get_available_providers()]
    return ort.InferenceSession(path, sess_options=opts, providers=providers)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


class SsdDetector:
    """TF Object Detection API SSD export."""

    PERSON_CLASS = 1
    INPUT_SIZE = 300

    def __init__(self, path: str, name: str = "ssdlite", threads: int = 1) -> None:
        self.session = make_session(path, threads)
        self.name = name
        self.input_size = self.INPUT_SIZE
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"SSD model must have one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        outputs = {o.name.split(":")[0]: o.name for o in self.session.get_outputs()}
        try:
            self.output_names = [outputs[k] for k in ("detection_scores", "detection_boxes", "detection_classes")]
        except KeyError as e:
            raise ValueError(f"model is not a TF SSD export: missing output {e}") from None

    def detect(self, crop: np.ndarray, confidence: float) -> Detections:
        t0 = time.perf_counter()
        h, w = crop.shape[:2]
        # The exported graph resizes to 300x300 itself (its TF preprocessor is part
        # of the model), faster than a resize in numpy: feed the crop as it is.
        tensor = np.ascontiguousarray(crop)[None]
        pre = _ms(t0)
        t1 = time.perf_counter()
        scores, boxes, classes = self.session.run(self.output_names, {self.input_name: tensor})
        inf = _ms(t1)
        t2 = time.perf_counter()
        scores, boxes, classes = scores[0], boxes[0], classes[0]
        keep = (classes.astype(np.int64) == self.PERSON_CLASS) & (scores >= confidence)
        b = boxes[keep].astype(np.float64)
        out = np.stack([b[:, 1] * w, b[:, 0] * h, b[:, 3] * w, b[:, 2] * h], axis=1) if b.size else np.zeros((0, 4))
        return Detections(out, scores[keep].astype(np.float64), pre, inf, _ms(t2))


class YoloDetector:
    """Ultralytics YOLO v8/11 export ([1, 4 + classes, N] output)."""

    PERSON_CLASS = 0
    PAD_VALUE = 114

    def __init__(self, path: str, name: str, input_size: int, threads: int = 1, iou_threshold: float = 0.45) -> None:
        self.session = make_session(path, threads)
        self.name = name
        self.input_size = input_size
        self.iou_threshold = iou_threshold
        self.input_name = self.session.get_inputs()[0].name

    def letterbox(self, crop: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Scales to fit the square input keeping the aspect ratio, pads the rest.
        Returns the NCHW float tensor, the scale and the left/top padding."""
        h, w = crop.shape[:2]
        s = self.input_size
        scale = min(s / w, s / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.full((s, s, 3), self.PAD_VALUE, dtype=np.uint8)
        left, top = (s - nw) // 2, (s - nh) // 2
        canvas[top : top + nh, left : left + nw] = resize_bilinear(crop, nw, nh)
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return tensor, scale, left, top

    def decode(self, output: np.ndarray, confidence: float, scale: float, left: int, top: int, crop_w: int, crop_h: int) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes in crop pixels and their scores from a raw [1, 4+C, N] output."""
        pred = output[0]
        if pred.ndim != 2 or pred.shape[0] < 5:
            raise ValueError(f"unexpected YOLO output shape {output.shape}; expected [1, 4 + classes, N]")
        class_scores = pred[4:]
        best = class_scores.argmax(axis=0)
        score = class_scores.max(axis=0)
        keep = (best == self.PERSON_CLASS) & (score >= confidence)
        if not keep.any():
            return np.zeros((0, 4)), np.zeros((0,))
        cx, cy, bw, bh = (pred[i, keep].astype(np.float64) for i in range(4))
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        scores = score[keep].astype(np.float64)
        kept = nms(boxes, scores, self.iou_threshold)
        boxes, scores = boxes[kept], scores[kept]
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - left) / scale, 0, crop_w)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - top) / scale, 0, crop_h)
        return boxes, scores

    def detect(self, crop: np.ndarray, confidence: float) -> Detections:
        t0 = time.perf_counter()
        tensor, scale, left, top = self.letterbox(crop)
        pre = _ms(t0)
        t1 = time.perf_counter()
        (output,) = self.session.run(None, {self.input_name: tensor})[:1]
        inf = _ms(t1)
        t2 = time.perf_counter()
        boxes, scores = self.decode(output, confidence, scale, left, top, crop.shape[1], crop.shape[0])
        return Detections(boxes, scores, pre, inf, _ms(t2))


def load_detector(path: str, fmt: str, name: str, input_size: int | None, threads: int) -> Detector:
    if fmt == "ssd":
        return SsdDetector(path, name=name, threads=threads)
    if fmt == "yolo":
        if not input_size:
            raise ValueError("YOLO models need an input size (320 or 640)")
        return YoloDetector(path, name=name, input_size=input_size, threads=threads)
    raise ValueError(f"unknown model format `{fmt}`; allowed: ssd, yolo")


class ModelSet:
    """The detectors of one catalog entry: one model for every crop, or one per
    model input size (ROI attention's `target_size` picks among them)."""

    def __init__(self, name: str, detectors: dict[int, Detector]) -> None:
        if not detectors:
            raise ValueError("a model set needs at least one model")
        self.name = name
        self.detectors = detectors

    @property
    def input_size(self) -> int:
        return max(self.detectors)

    def pick(self, target_size: int | None) -> Detector:
        """The variant for `target_size`; else the closest one."""
        if target_size in self.detectors:
            return self.detectors[target_size]
        if len(self.detectors) == 1 or not target_size:
            return self.detectors[self.input_size]
        closest = min(self.detectors, key=lambda s: abs(s - target_size))
        return self.detectors[closest]


def load_model_set(params: dict[str, str], threads: int = 1) -> ModelSet:
    """Loads a catalog entry described as the `set_model` command params:
    `size`, `format`, and either `path` (+ `input_size` for YOLO) or
    `variant_<input size>` entries. Raises ValueError or onnxruntime errors."""
    name = params.get("size") or "model"
    fmt = params.get("format", "ssd")
    variants = {int(k.removeprefix("variant_")): v for k, v in params.items() if k.startswith("variant_")}
    path = params.get("path")
    if path and variants:
        raise ValueError("give either `path` or `variant_<size>` entries, not both")
    if not path and not variants:
        raise ValueError("no model file given (`path` or `variant_<size>`)")
    files = [path] if path else list(variants.values())
    for f in files:
        if not os.path.isfile(f):
            raise ValueError(f"model file not found: {f}")
    if path:
        input_size = int(params["input_size"]) if params.get("input_size") else None
        det = load_detector(path, fmt, name, input_size, threads)
        return ModelSet(name, {det.input_size: det})
    return ModelSet(name, {size: load_detector(p, fmt, name, size, threads) for size, p in sorted(variants.items())})
