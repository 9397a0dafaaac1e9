"""Person detectors on ONNX models, run by the fastest runtime available
(`runtimes`: OpenVINO or ONNX Runtime).

Each detector prepares the model's native input itself, once per frame: the crop
is resized (OpenCV, SIMD, about 0.2 ms for 640x480 -> 300x300) to the exact input
size, so the model never resizes inside its graph and the runtime gets a static
shape. Measured on the development machine (1 thread, SSDLite): the graph's own
resize of a 640x480 frame costs about 1.5 ms more per frame than this resize.

Two output layouts are understood:
- `ssd`: the TF Object Detection API export (the shipped SSDLite-MobileNetV2 COCO):
  input uint8 NHWC, fed 300x300 (stretched: the model was trained on stretched
  images), outputs num_detections, detection_scores, detection_boxes [ymin, xmin,
  ymax, xmax] normalized, detection_classes (1 = person).
- `movenet`: MoveNet MultiPose (Google, Apache-2.0): input int32 NHWC RGB 0..255,
  fed a square letterbox of `input_size` (256: the model's design size; pad, do
  not stretch); output [1, 6, 56]: per person 17 keypoints (y, x, score)
  normalized to the input, the box (ymin, xmin, ymax, xmax) and the person score.
  A person detector that also gives the body's keypoints, and finds people lying
  on the floor that SSDLite misses (docs/benchmarks.md, "Pose").
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
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .geometry import nms
from .runtimes import Runtime, open_runtime

# OpenCV's own threads stay off: a worker's parallelism is its frames at once
# (`--parallel`), each prepared on its own thread.
cv2.setNumThreads(1)

# A frame like the ones a camera in a room gives (a person standing in Intel's
# sample-video room, CC-BY-4.0): runtimes are timed on it, prepared as the
# detector prepares frames.
SAMPLE = Path(__file__).with_name("sample.jpg")


def sample_frame() -> np.ndarray:
    image = cv2.imread(str(SAMPLE))
    if image is None:  # not shipped: a grey frame times the runtimes nearly as well
        return np.full((480, 640, 3), 128, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Engine:
    """How a model runs: `backend` (auto | openvino | onnxruntime),
    `precision` (auto | fp32 | int8), the quantized variant `int8` (OpenVINO
    IR) if any, `threads` per inference, and `parallel` inferences at once."""

    backend: str = "auto"
    precision: str = "auto"
    int8: str | None = None
    threads: int = 1
    parallel: int = 1

    def open(self, path: str, input_shape: list[int], sample: np.ndarray) -> Runtime:
        return open_runtime(path, self.backend, input_shape, self.threads, self.parallel,
                            int8=self.int8, precision=self.precision, sample=sample)


# The 17 COCO keypoints, in the order pose models give them.
KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


@dataclass
class Detections:
    boxes: np.ndarray  # (n, 4) float64, crop pixels
    scores: np.ndarray  # (n,) float64
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    # (n, 17, 3) float64: x, y in crop pixels and score per keypoint (KEYPOINTS
    # order); None for detectors that find boxes only.
    keypoints: np.ndarray | None = None


class Detector(Protocol):
    name: str
    input_size: int
    runtime: Runtime

    def detect(self, crop: np.ndarray, confidence: float) -> Detections: ...


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an HxWx3 uint8 image (a view is fine)."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


class SsdDetector:
    """TF Object Detection API SSD export."""

    PERSON_CLASS = 1
    INPUT_SIZE = 300

    def __init__(self, path: str, name: str = "ssdlite", threads: int = 1, backend: str = "auto", engine: Engine | None = None) -> None:
        s = self.INPUT_SIZE
        self.name = name
        self.input_size = s
        engine = engine or Engine(backend, threads=threads)
        self.runtime = engine.open(path, [1, s, s, 3], self.prepare(sample_frame()))
        outputs = {o.split(":")[0]: o for o in self.runtime.output_names}
        try:
            self.output_names = [outputs[k] for k in ("detection_scores", "detection_boxes", "detection_classes")]
        except KeyError as e:
            raise ValueError(f"model is not a TF SSD export: missing output {e}") from None

    def prepare(self, crop: np.ndarray) -> np.ndarray:
        # Stretched to the model's input; the boxes come back normalized to it,
        # which is normalized to the crop as well.
        return resize(crop, self.input_size, self.input_size)[None]

    def detect(self, crop: np.ndarray, confidence: float) -> Detections:
        t0 = time.perf_counter()
        h, w = crop.shape[:2]
        tensor = self.prepare(crop)
        pre = _ms(t0)
        t1 = time.perf_counter()
        scores, boxes, classes = self.runtime.run(tensor, self.output_names)
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

    def __init__(self, path: str, name: str, input_size: int, threads: int = 1, iou_threshold: float = 0.45, backend: str = "auto", engine: Engine | None = None) -> None:
        self.name = name
        self.input_size = input_size
        self.iou_threshold = iou_threshold
        engine = engine or Engine(backend, threads=threads)
        self.runtime = engine.open(path, [1, 3, input_size, input_size], self.letterbox(sample_frame())[0])
        self.output = self.runtime.output_names[0]

    def letterbox(self, crop: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Scales to fit the square input keeping the aspect ratio, pads the rest.
        Returns the NCHW float tensor, the scale and the left/top padding."""
        h, w = crop.shape[:2]
        s = self.input_size
        scale = min(s / w, s / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.full((s, s, 3), self.PAD_VALUE, dtype=np.uint8)
        left, top = (s - nw) // 2, (s - nh) // 2
        canvas[top : top + nh, left : left + nw] = resize(crop, nw, nh)
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
        (output,) = self.runtime.run(tensor, [self.output])
        inf = _ms(t1)
        t2 = time.perf_counter()
        boxes, scores = self.decode(output, confidence, scale, left, top, crop.shape[1], crop.shape[0])
        return Detections(boxes, scores, pre, inf, _ms(t2))


class MoveNetDetector:
    """MoveNet MultiPose export ([1, 6, 56] output): persons with keypoints."""

    def __init__(self, path: str, name: str = "movenet", input_size: int = 256, threads: int = 1, backend: str = "auto", engine: Engine | None = None) -> None:
        if input_size % 32 or not 64 <= input_size <= 1024:
            raise ValueError(f"MoveNet input size must be a multiple of 32 in 64..1024, got {input_size}")
        self.name = name
        self.input_size = input_size
        engine = engine or Engine(backend, threads=threads)
        self.runtime = engine.open(path, [1, input_size, input_size, 3], self.letterbox(sample_frame())[0])
        self.output = self.runtime.output_names[0]

    def letterbox(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """The crop scaled to fit the square input (aspect kept), padded black at
        the right and bottom; returns the int32 NHWC tensor and the scale."""
        h, w = crop.shape[:2]
        s = self.input_size
        scale = min(s / w, s / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.zeros((s, s, 3), dtype=np.int32)
        canvas[:nh, :nw] = resize(crop, nw, nh)
        return canvas[None], scale

    def decode(self, output: np.ndarray, confidence: float, scale: float, crop_w: int, crop_h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and keypoints in crop pixels from a raw [1, N, 56] output."""
        pred = np.asarray(output, dtype=np.float64)
        if pred.ndim != 3 or pred.shape[2] != 56:
            raise ValueError(f"unexpected MoveNet output shape {pred.shape}; expected [1, N, 56]")
        pred = pred[0]
        pred = pred[np.isfinite(pred).all(axis=1) & (pred[:, 55] >= confidence)]
        s = self.input_size / scale  # normalized input -> crop pixels
        kp = pred[:, :51].reshape(-1, 17, 3)
        keypoints = np.stack([
            np.clip(kp[:, :, 1] * s, 0, crop_w),
            np.clip(kp[:, :, 0] * s, 0, crop_h),
            np.clip(kp[:, :, 2], 0, 1),
        ], axis=2)
        boxes = np.stack([pred[:, 52] * s, pred[:, 51] * s, pred[:, 54] * s, pred[:, 53] * s], axis=1)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, crop_w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, crop_h)
        scores = pred[:, 55]
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        boxes, scores, keypoints = boxes[keep], scores[keep], keypoints[keep]
        kept = nms(boxes, scores, 0.5)
        return boxes[kept], scores[kept], keypoints[kept]

    def detect(self, crop: np.ndarray, confidence: float) -> Detections:
        t0 = time.perf_counter()
        tensor, scale = self.letterbox(crop)
        pre = _ms(t0)
        t1 = time.perf_counter()
        (output,) = self.runtime.run(tensor, [self.output])
        inf = _ms(t1)
        t2 = time.perf_counter()
        boxes, scores, keypoints = self.decode(output, confidence, scale, crop.shape[1], crop.shape[0])
        return Detections(boxes, scores, pre, inf, _ms(t2), keypoints)


def load_detector(path: str, fmt: str, name: str, input_size: int | None, engine: Engine) -> Detector:
    if fmt == "ssd":
        return SsdDetector(path, name=name, engine=engine)
    if fmt == "yolo":
        if not input_size:
            raise ValueError("YOLO models need an input size (320 or 640)")
        return YoloDetector(path, name=name, input_size=input_size, engine=engine)
    if fmt == "movenet":
        return MoveNetDetector(path, name=name, input_size=input_size or 256, engine=engine)
    raise ValueError(f"unknown model format `{fmt}`; allowed: ssd, yolo, movenet")


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

    @property
    def turned_looks(self) -> bool:
        """Whether rest areas are also looked at turned a quarter: for models
        that find people upright only (not MoveNet, which finds people lying
        as they are)."""
        return not all(isinstance(d, MoveNetDetector) for d in self.detectors.values())

    @property
    def backend(self) -> str:
        """The runtime(s) of the detectors, e.g. `openvino:CPU`."""
        return ",".join(sorted({d.runtime.name for d in self.detectors.values()}))

    @property
    def choice(self) -> str:
        """Which runtime and precision run the model, and why."""
        return "; ".join(sorted({d.runtime.choice for d in self.detectors.values() if d.runtime.choice}))

    def pick(self, target_size: int | None) -> Detector:
        """The variant for `target_size`; else the closest one."""
        if target_size in self.detectors:
            return self.detectors[target_size]
        if len(self.detectors) == 1 or not target_size:
            return self.detectors[self.input_size]
        closest = min(self.detectors, key=lambda s: abs(s - target_size))
        return self.detectors[closest]


def load_model_set(params: dict[str, str], threads: int = 1, parallel: int = 1) -> ModelSet:
    """Loads a catalog entry described as the `set_model` command params:
    `size`, `format`, `backend` and `precision` (`auto` when absent), and
    either `path` (+ `input_size` for YOLO, + `int8` for its quantized
    variant) or `variant_<input size>` entries. Raises ValueError or runtime
    errors."""
    name = params.get("size") or "model"
    fmt = params.get("format", "ssd")
    variants = {int(k.removeprefix("variant_")): v for k, v in params.items() if k.startswith("variant_")}
    path = params.get("path")
    int8 = params.get("int8") or None
    if path and variants:
        raise ValueError("give either `path` or `variant_<size>` entries, not both")
    if not path and not variants:
        raise ValueError("no model file given (`path` or `variant_<size>`)")
    if int8 and not path:
        raise ValueError("an INT8 variant goes with one model file (`path`), not with `variant_<size>` entries")
    # A missing INT8 variant fails only where INT8 is required; with `auto`
    # the runtime choice leaves it out with a warning.
    precision = params.get("precision", "auto")
    files = ([path] if path else list(variants.values())) + ([int8] if int8 and precision == "int8" else [])
    for f in files:
        if not os.path.isfile(f):
            raise ValueError(f"model file not found: {f}")
    engine = Engine(params.get("backend", "auto"), precision, int8, threads, parallel)
    if path:
        input_size = int(params["input_size"]) if params.get("input_size") else None
        det = load_detector(path, fmt, name, input_size, engine)
        return ModelSet(name, {det.input_size: det})
    return ModelSet(name, {size: load_detector(p, fmt, name, size, engine) for size, p in sorted(variants.items())})
