"""The shipped person detector worker.

Started by the daemon as `<command> --confidence C --model-name NAME --model-format
ssd|yolo|movenet --backend auto|openvino|onnxruntime` plus either `--model PATH
[--input-size N]` or one `--variant SIZE=PATH` per model input size (see
docs/worker-protocol.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import protocol
from .detectors import KEYPOINTS, Detections, ModelSet, load_model_set
from .geometry import Crop, crop_to_frame, final_boxes, keypoints_to_frame, look_crops, overlapping, suggested_roi, turned_back
from .sdk import Worker, serve, start_worker

log = logging.getLogger("orion_worker.person_detector")

# A box found turned that has this much of its area inside a person found
# upright is part of that person.
OVERLAP = 0.4


@dataclass
class Found:
    """What one frame showed: boxes (n, 4) in full-frame pixels, scores (n,),
    keypoints (n, 17, 3: x, y, score; NaN for models without them), the
    result's timing and model fields."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray
    timing: dict[str, float]
    model: dict[str, Any]


class PersonDetector(Worker):
    inference_type = "person_detection"

    def __init__(self, models: ModelSet, confidence: float, threads: int = 1, parallel: int = 1) -> None:
        self.models = models
        self.confidence = confidence
        self.threads = threads
        # Frames worked on at once (the SDK runs them on this many threads).
        self.parallel = parallel
        self._swap = threading.Lock()

    def model_info(self) -> dict[str, Any]:
        models = self.models
        return protocol.model_info(models.name, models.input_size, models.backend, models.choice)

    def detect(
        self,
        image: np.ndarray,
        crop: Crop,
        target_size: int | None = None,
        rest: list[Crop] | None = None,
        exits: list[Crop] | None = None,
    ) -> Found:
        """Boxes in full-frame pixels, scores, keypoints (pose models), timings
        and the model used.

        Each rest area (where people lie) is looked at turned a quarter both
        ways too when the model finds people upright only (SSDLite misses most
        people lying down; MoveNet finds them as they are: see
        docs/benchmarks.md). Each exit area (a doorway) is looked at on its
        own: closer, a person half in view there is found."""
        started = time.perf_counter()
        # One model set for the whole frame: a swap on another thread must
        # not mix two models in one answer.
        models = self.models
        detector = models.pick(target_size)
        found = detector.detect(crop.apply(image), self.confidence)
        upright = crop_to_frame(found.boxes, crop)
        upright_scores = found.scores
        parts = [(upright, found.scores, self._keypoints(found, crop, 0))]
        pre, inf, post = found.preprocess_ms, found.inference_ms, found.postprocess_ms
        turns = (1, -1) if models.turned_looks else ()
        looks = [(area, k) for area in rest or [] for k in turns] + [(area, 0) for area in exits or []]
        for area, k in looks:
            part = area.apply(image)
            if k:
                part = np.ascontiguousarray(np.rot90(part, k))
            seen = models.pick(None).detect(part, self.confidence)
            boxes = turned_back(seen.boxes, area, k) if k else crop_to_frame(seen.boxes, area)
            scores, keypoints = seen.scores, self._keypoints(seen, area, k)
            if k and len(boxes):
                # A turned look over someone standing finds parts of them
                # (legs across a bed): what lies mostly inside a more
                # confident person the upright look found is that person.
                # Only a more confident upright person: a weak upright
                # guess over someone lying does not hide them.
                keep = np.array([
                    not overlapping(boxes[i : i + 1], upright[upright_scores > scores[i]], OVERLAP)[0]
                    for i in range(len(boxes))
                ], dtype=bool)
                boxes, scores, keypoints = boxes[keep], scores[keep], keypoints[keep]
            parts.append((boxes, scores, keypoints))
            pre, inf, post = pre + seen.preprocess_ms, inf + seen.inference_ms, post + seen.postprocess_ms
        boxes = np.concatenate([b for b, _, _ in parts])
        scores = np.concatenate([s for _, s, _ in parts])
        keypoints = np.concatenate([k for _, _, k in parts])
        keep = final_boxes(boxes, scores)
        total = (time.perf_counter() - started) * 1e3
        return Found(
            boxes[keep],
            scores[keep],
            keypoints[keep],
            protocol.timing(pre, inf, post, total),
            protocol.model_info(models.name, detector.input_size, detector.runtime.name),
        )

    @staticmethod
    def _keypoints(found: Detections, crop: Crop, k: int) -> np.ndarray:
        """The detections' keypoints in full-frame pixels; NaN where the model
        gives none."""
        if found.keypoints is None:
            return np.full((len(found.scores), 17, 3), np.nan)
        return keypoints_to_frame(found.keypoints, crop, k)

    def process(self, image: np.ndarray, crop: Crop, frame: dict[str, Any]) -> dict[str, Any]:
        meta = frame.get("meta") or {}
        roi = meta.get("roi_processing") or {}
        target = roi.get("target_size") if isinstance(roi.get("target_size"), int) else None
        rest = look_crops(meta.get("rest_areas"), image.shape[1], image.shape[0])
        exits = look_crops(meta.get("exit_areas"), image.shape[1], image.shape[0])
        found = self.detect(image, crop, target, rest, exits)
        detections = [
            protocol.detection(
                protocol.rect(b[0], b[1], b[2] - b[0], b[3] - b[1]),
                s,
                "person",
                protocol.keypoints(KEYPOINTS, kp) if np.isfinite(kp).all() else None,
            )
            for b, s, kp in zip(found.boxes, found.scores, found.keypoints)
        ]
        return protocol.result(
            frame_seq=frame.get("seq", 0),
            trace_id=str(meta.get("trace_id", "")),
            inference_type=self.inference_type,
            detections=detections,
            model=found.model,
            timing=found.timing,
            suggested_roi=suggested_roi(found.boxes, image.shape[1], image.shape[0]),
        )

    def command(self, name: str, params: dict[str, str]) -> tuple[bool, str]:
        if name == "set_model":
            with self._swap:
                # Load completely before swapping: on any failure the old model
                # stays. Frames keep being served meanwhile (the SDK runs commands
                # off the frame loop).
                try:
                    new = load_model_set(params, self.threads, self.parallel)
                except Exception as e:
                    return False, f"cannot load model {params.get('size', '?')}: {e}"
                self.models = new
                log.info("model %s loaded (inputs %s, backend %s)", new.name, sorted(new.detectors), new.backend)
                return True, f"model {new.name} loaded (inputs {sorted(new.detectors)}, {new.choice or new.backend})"
        return super().command(name, params)


def params_from_args(args: argparse.Namespace) -> dict[str, str]:
    params = {"size": args.model_name, "format": args.model_format, "backend": args.backend, "precision": args.precision}
    if args.model:
        params["path"] = args.model
    if args.int8:
        params["int8"] = args.int8
    if args.input_size:
        params["input_size"] = str(args.input_size)
    for v in args.variant:
        size, sep, path = v.partition("=")
        if not sep or not size.isdigit():
            raise ValueError(f"--variant must be SIZE=PATH, got `{v}`")
        params[f"variant_{size}"] = path
    return params


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="orion-person-detector", description=__doc__)
    p.add_argument("--model", help="ONNX model file (one model for every crop)")
    p.add_argument("--variant", action="append", default=[], metavar="SIZE=PATH", help="model file per input size")
    p.add_argument("--model-name", default="ssdlite", help="catalog name reported in results")
    p.add_argument("--model-format", choices=["ssd", "yolo", "movenet"], default="ssd")
    p.add_argument("--input-size", type=int, default=None, help="input size of --model: YOLO 320 or 640; MoveNet a multiple of 32 (256)")
    p.add_argument("--int8", help="the quantized (INT8, OpenVINO IR) variant of --model")
    p.add_argument("--backend", choices=["auto", "openvino", "onnxruntime"], default="auto", help="inference runtime (auto: the fastest on this machine, measured and remembered)")
    p.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto", help="auto: INT8 where it is faster and passed its accuracy check")
    p.add_argument("--confidence", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="threads per inference")
    p.add_argument("--parallel", type=int, default=1, help="frames worked on at once (one core each)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = start_worker(args.log_level)
    try:
        if not 1 <= args.parallel <= 64 or not 1 <= args.threads <= 64:
            raise ValueError(f"--parallel and --threads must be 1..64, got {args.parallel} and {args.threads}")
        models = load_model_set(params_from_args(args), args.threads, args.parallel)
    except Exception as e:
        log.error("cannot load model %s: %s", args.model_name, e)
        protocol.write_message(out, protocol.error(f"cannot load model {args.model_name}: {e}", fatal=True))
        return 1
    log.info("model %s loaded (inputs %s, %s)", models.name, sorted(models.detectors), models.choice or models.backend)
    return serve(PersonDetector(models, args.confidence, args.threads, args.parallel), stdout=out)


if __name__ == "__main__":
    sys.exit(main())
