"""Inference runtimes: OpenVINO and ONNX Runtime find the same people; a model
OpenVINO cannot compile falls back to ONNX Runtime with one warning."""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from orion_worker.detectors import SsdDetector
from orion_worker.geometry import Crop
from orion_worker.person_detector import PersonDetector
from orion_worker.runtimes import open_runtime

from conftest import MODEL, load_rgb

FIXTURES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]


@pytest.fixture(scope="module")
def both():
    from orion_worker.detectors import ModelSet

    ov = SsdDetector(str(MODEL), backend="openvino")
    ort = SsdDetector(str(MODEL), backend="onnxruntime")
    assert ov.runtime.name == "openvino:CPU"
    assert ort.runtime.name == "onnxruntime:CPUExecutionProvider"
    return ModelSet("ssdlite", {300: ov}), ModelSet("ssdlite", {300: ort})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("name", FIXTURES)
def test_both_backends_find_the_same_people(both, name):
    image = load_rgb(name)
    crop = Crop(0, 0, image.shape[1], image.shape[0])
    found = PersonDetector(both[0], 0.5).detect(image, crop)
    ov_boxes = found.boxes
    ov_scores = found.scores
    ov_model = found.model
    found = PersonDetector(both[1], 0.5).detect(image, crop)
    ort_boxes = found.boxes
    ort_scores = found.scores
    ort_model = found.model
    assert ov_model["backend"] == "openvino:CPU" and ort_model["backend"].startswith("onnxruntime")
    assert len(ov_scores) == len(ort_scores), (name, ov_scores, ort_scores)
    for i in range(len(ov_scores)):
        j = int(np.argmax([iou(ov_boxes[i], b) for b in ort_boxes]))
        assert iou(ov_boxes[i], ort_boxes[j]) >= 0.9, (name, ov_boxes[i], ort_boxes[j])
        assert abs(ov_scores[i] - ort_scores[j]) <= 0.02, (name, ov_scores[i], ort_scores[j])


def test_explicit_backend_is_used(both):
    assert both[1].backend == "onnxruntime:CPUExecutionProvider"
    assert both[0].backend == "openvino:CPU"


def test_a_model_openvino_cannot_compile_falls_back_to_onnxruntime(tmp_path, capfd):
    # A [1, 4] x [4, 4] product cannot take the NHWC image shape the detector
    # asks for: OpenVINO refuses the reshape; ONNX Runtime runs the model as it is.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    rt = open_runtime(str(path), "auto", [1, 300, 300, 3])
    assert rt.name.startswith("onnxruntime:")
    assert rt.choice == "onnxruntime fp32: the only option that could open the model"
    # Said once, on stderr, by the process that timed the runtimes.
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[WARNING]")]
    assert len(warnings) == 1 and "runtime openvino fp32 cannot open" in warnings[0] and "not considered" in warnings[0], warnings
    out = rt.run(np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32), rt.output_names)
    assert out[0].tolist() == [[0.0, 2.0, 0.0, 4.0]]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="allowed: auto, openvino, onnxruntime"):
        open_runtime(str(MODEL), "tensorrt", [1, 300, 300, 3])


def test_the_compiled_model_is_cached_and_a_cached_one_finds_the_same_people(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path))
    image = load_rgb("astronaut.png")
    crop = Crop(0, 0, image.shape[1], image.shape[0])
    from orion_worker.detectors import ModelSet

    def detect():
        det = SsdDetector(str(MODEL), backend="openvino")
        assert det.runtime.name == "openvino:CPU"
        return PersonDetector(ModelSet("ssdlite", {300: det}), 0.5).detect(image, crop)

    first = detect()
    blobs = list((tmp_path / "openvino").iterdir())
    assert blobs, "the compiled model is in the cache"
    again = detect()  # imported from the cache
    assert list((tmp_path / "openvino").iterdir()) == blobs, "nothing compiled again"
    assert len(first.scores) == len(again.scores) >= 1
    assert np.allclose(first.boxes, again.boxes) and np.allclose(first.scores, again.scores)


def test_a_cache_that_cannot_be_made_is_skipped(monkeypatch):
    from orion_worker.runtimes import cache_dir

    monkeypatch.setenv("ORION_CACHE_DIR", "/proc/orion-no-such-cache")
    assert cache_dir() is None, "no cache where none can be made"
    det = SsdDetector(str(MODEL), backend="openvino")
    assert det.runtime.name == "openvino:CPU", "still OpenVINO, compiled without a cache"
