"""YOLO (v8/11 layout) decoding and NMS through a real ONNX Runtime session on a
small model built here: its output is a fixed [1, 84, N] prediction tensor (plus
zero times the input, so that the input is really consumed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from orion_worker.detectors import YoloDetector
from orion_worker.geometry import Crop, crop_to_frame

SIZE = 320
NUM_CLASSES = 80


def prediction() -> np.ndarray:
    """Candidates in letterboxed input pixels (cx, cy, w, h) with class scores."""
    cands = [
        # (cx, cy, w, h, class, score)
        (100, 160, 40, 100, 0, 0.90),  # person
        (102, 162, 40, 100, 0, 0.80),  # same person, lower score: suppressed by NMS
        (250, 150, 30, 60, 0, 0.70),  # second person
        (200, 200, 50, 50, 2, 0.95),  # car: not a person
        (50, 50, 20, 20, 0, 0.20),  # person below the threshold
    ]
    pred = np.zeros((1, 4 + NUM_CLASSES, len(cands)), dtype=np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(cands):
        pred[0, :4, i] = (cx, cy, w, h)
        pred[0, 4 + cls, i] = score
    return pred


def build_model(path: str, size: int = SIZE) -> None:
    pred = prediction()
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["sum"], keepdims=0),
        helper.make_node("Mul", ["sum", "zero"], ["nothing"]),
        helper.make_node("Add", ["pred", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(pred.shape))],
        initializer=[numpy_helper.from_array(pred, "pred"), numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_yolo_decode_nms_and_mapping(tmp_path):
    path = str(tmp_path / "tiny_yolo.onnx")
    build_model(path)
    det = YoloDetector(path, name="n", input_size=SIZE)
    # A 640x480 crop letterboxes into 320x320 at scale 0.5 with 40 px bars on top
    # and bottom.
    crop_img = np.zeros((480, 640, 3), dtype=np.uint8)
    _, scale, left, top = det.letterbox(crop_img)
    assert (scale, left, top) == (0.5, 0, 40)

    found = det.detect(crop_img, confidence=0.5)
    assert len(found.scores) == 2, found.scores
    assert np.allclose(found.scores, [0.9, 0.7])
    # person 1: input box 80..120 x 110..210 -> crop (x-0)/0.5, (y-40)/0.5
    assert np.allclose(found.boxes[0], [160, 140, 240, 340])
    assert np.allclose(found.boxes[1], [470, 160, 530, 280])

    # And into the full frame when the crop sits at (100, 50).
    full = crop_to_frame(found.boxes, Crop(100, 50, 640, 480))
    assert np.allclose(full[0], [260, 190, 340, 390])
    assert found.inference_ms > 0


def test_model_set_picks_the_variant_for_the_target_size(tmp_path):
    from orion_worker.detectors import load_model_set

    for size in (320, 640):
        build_model(str(tmp_path / f"m{size}.onnx"), size)
    models = load_model_set({"size": "n", "format": "yolo", "variant_320": str(tmp_path / "m320.onnx"), "variant_640": str(tmp_path / "m640.onnx")})
    assert models.pick(320).input_size == 320
    assert models.pick(640).input_size == 640
    assert models.pick(None).input_size == 640
    assert models.pick(400).input_size == 320, "closest variant"
