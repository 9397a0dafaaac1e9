"""The shipped person detector worker.

Started by the daemon as `<command> --model PATH --model-name NAME --model-format
ssd|yolo --confidence C [--input-size N] [--threads N]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any

import numpy as np

from . import protocol
from .detectors import Detector, load_detector
from .geometry import Crop, crop_to_frame, suggested_roi
from .sdk import Worker, serve, setup_logging

log = logging.getLogger("orion_worker.person_detector")


class PersonDetector(Worker):
    inference_type = "person_detection"

    def __init__(self, detector: Detector, confidence: float, threads: int = 1) -> None:
        self.detector = detector
        self.confidence = confidence
        self.threads = threads

    def model_info(self) -> dict[str, Any]:
        return protocol.model_info(self.detector.name, self.detector.input_size)

    def detect(self, image: np.ndarray, crop: Crop) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Boxes in full-frame pixels, scores, and timings for one image."""
        started = time.perf_counter()
        found = self.detector.detect(crop.apply(image), self.confidence)
        boxes = crop_to_frame(found.boxes, crop)
        total = (time.perf_counter() - started) * 1e3
        timings = protocol.timing(found.preprocess_ms, found.inference_ms, found.postprocess_ms, total)
        return boxes, found.scores, timings

    def process(self, image: np.ndarray, crop: Crop, frame: dict[str, Any]) -> dict[str, Any]:
        boxes, scores, timings = self.detect(image, crop)
        detections = [
            protocol.detection(protocol.rect(b[0], b[1], b[2] - b[0], b[3] - b[1]), s, "person")
            for b, s in zip(boxes, scores)
        ]
        meta = frame.get("meta") or {}
        return protocol.result(
            frame_seq=frame.get("seq", 0),
            trace_id=str(meta.get("trace_id", "")),
            inference_type=self.inference_type,
            detections=detections,
            model=self.model_info(),
            timing=timings,
            suggested_roi=suggested_roi(boxes, image.shape[1], image.shape[0]),
        )

    def command(self, name: str, params: dict[str, str]) -> tuple[bool, str]:
        if name == "set_model":
            path, size = params.get("path"), params.get("size", "")
            if not path or not os.path.isfile(path):
                return False, f"model file not found: {path}"
            fmt = params.get("format", "ssd")
            input_size = int(params["input_size"]) if params.get("input_size") else None
            # Load fully before swapping: a failure leaves the old model in place.
            new = load_detector(path, fmt, size, input_size, self.threads)
            self.detector = new
            return True, f"model {size} loaded from {path}"
        return super().command(name, params)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="orion-person-detector", description=__doc__)
    p.add_argument("--model", required=True, help="ONNX model file")
    p.add_argument("--model-name", default="ssdlite", help="catalog name reported in results")
    p.add_argument("--model-format", choices=["ssd", "yolo"], default="ssd")
    p.add_argument("--input-size", type=int, default=None, help="YOLO input size (320, 640)")
    p.add_argument("--confidence", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The daemon owns shutdown (it closes stdin): a Ctrl-C meant for it must not
    # kill the worker mid-frame.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO))
    # Claim stdout for the protocol before anything (onnxruntime included) can print.
    from .sdk import protocol_stdout

    out = protocol_stdout()
    try:
        detector = load_detector(args.model, args.model_format, args.model_name, args.input_size, args.threads)
    except Exception as e:
        log.error("cannot load model %s: %s", args.model, e)
        protocol.write_message(out, protocol.error(f"cannot load model {args.model}: {e}", fatal=True))
        return 1
    log.info("model %s loaded from %s (input %d)", detector.name, args.model, detector.input_size)
    return serve(PersonDetector(detector, args.confidence, args.threads), stdout=out)


if __name__ == "__main__":
    sys.exit(main())
