"""The runtime is chosen by measurement on the real model: a slower runtime is
never chosen, the choice is remembered per model and machine, and a changed
model is measured again."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from orion_worker import runtime_choice
from orion_worker.detectors import SsdDetector, sample_frame
from orion_worker.runtime_choice import ChoiceStore, Option, choose
from orion_worker.runtimes import OnnxRuntime, OpenVinoRuntime

from conftest import MODEL

SHAPE = [1, 300, 300, 3]


class Slower:
    """A real runtime made slower by `extra_ms` per inference."""

    def __init__(self, inner, extra_ms: float) -> None:
        self.inner, self.extra = inner, extra_ms / 1e3
        self.name = "slower:" + inner.name
        self.output_names = inner.output_names
        self.runs = 0

    def run(self, tensor, outputs):
        self.runs += 1
        out = self.inner.run(tensor, outputs)
        time.sleep(self.extra)
        return out


@pytest.fixture
def sample():
    """The model's real input: the sample frame resized as the detector does."""
    import cv2

    return cv2.resize(sample_frame(), (300, 300))[None]


def opener(slow: str, opened: list[str], model=MODEL):
    """Opens real runtimes; the one named `slow` 30 ms slower than it is."""

    def open_option(o: Option):
        opened.append(o.label)
        rt = OpenVinoRuntime(str(model), 1, SHAPE) if o.runtime == "openvino" else OnnxRuntime(str(model), 1)
        if o.label == slow:
            rt = Slower(rt, 30)
        return rt, rt.output_names

    return open_option


@pytest.mark.parametrize("slow", ["openvino fp32", "onnxruntime fp32"])
def test_a_slower_runtime_is_never_chosen(tmp_path, sample, slow):
    options = [Option("openvino", "fp32", str(MODEL)), Option("onnxruntime", "fp32", str(MODEL))]
    opened: list[str] = []
    chosen = choose(options, opener(slow, opened), sample, SHAPE, 1, 1, ChoiceStore(tmp_path))
    assert chosen.option.label != slow, chosen.reason()
    assert sorted(opened[:2]) == ["onnxruntime fp32", "openvino fp32"], "both were timed"
    assert opened[2:] == [chosen.option.label], "then the winner alone is opened to be kept"
    assert chosen.figures[slow] > chosen.figures[chosen.option.label] + 20, chosen.figures
    assert chosen.reason().startswith(f"{chosen.option.label}: fastest of {chosen.option.label} ")
    assert not isinstance(chosen.runtime, Slower)


def test_the_choice_is_remembered_and_measured_again_when_the_model_changes(tmp_path, sample):
    cache = tmp_path / "cache"
    model = tmp_path / "model.onnx"
    shutil.copy(MODEL, model)
    options = [Option("openvino", "fp32", str(model)), Option("onnxruntime", "fp32", str(model))]
    opened: list[str] = []
    first = choose(options, opener("openvino fp32", opened, model), sample, SHAPE, 1, 1, ChoiceStore(cache))
    assert first.option.label == "onnxruntime fp32" and not first.remembered
    saved = json.loads((cache / "runtime-choice.json").read_text())
    (entry,) = saved.values()
    assert entry["option"] == "onnxruntime fp32" and set(entry["figures"]) == {"openvino fp32", "onnxruntime fp32"}
    assert entry["machine"] == runtime_choice.machine()

    # Remembered: only the winner is opened, nothing is timed.
    opened.clear()
    again = choose(options, opener("openvino fp32", opened, model), sample, SHAPE, 1, 1, ChoiceStore(cache))
    assert opened == ["onnxruntime fp32"] and again.remembered
    assert again.figures == entry["figures"]
    assert "remembered from" in again.reason()

    # The same model with other threads is another choice.
    opened.clear()
    choose(options, opener("openvino fp32", opened, model), sample, SHAPE, 2, 1, ChoiceStore(cache))
    assert sorted(opened[:2]) == ["onnxruntime fp32", "openvino fp32"]

    # A changed model file: measured again, and now ONNX Runtime is the slow one.
    import onnx

    changed_model = onnx.load(str(model))
    changed_model.doc_string = "retrained"
    onnx.save(changed_model, str(model))
    runtime_choice._digests.clear()
    opened.clear()
    changed = choose(options, opener("onnxruntime fp32", opened, model), sample, SHAPE, 1, 1, ChoiceStore(cache))
    assert sorted(opened[:2]) == ["onnxruntime fp32", "openvino fp32"] and not changed.remembered
    assert changed.option.label == "openvino fp32"


def test_a_broken_choice_file_is_measured_again_and_rewritten(tmp_path, sample):
    (tmp_path / "runtime-choice.json").write_text("{not json")
    options = [Option("openvino", "fp32", str(MODEL)), Option("onnxruntime", "fp32", str(MODEL))]
    chosen = choose(options, opener("openvino fp32", []), sample, SHAPE, 1, 1, ChoiceStore(tmp_path))
    assert chosen.option.label == "onnxruntime fp32"
    assert len(json.loads((tmp_path / "runtime-choice.json").read_text())) == 1


def test_auto_on_the_shipped_model_names_the_figures(monkeypatch, tmp_path):
    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path))
    det = SsdDetector(str(MODEL), backend="auto")
    choice = det.runtime.choice
    winner = choice.split(":")[0]
    assert winner in ("openvino fp32", "onnxruntime fp32"), choice
    assert "fastest of" in choice and "openvino fp32" in choice and "onnxruntime fp32" in choice
    assert det.runtime.name.startswith(winner.split()[0])
    # Asked for by name: nothing measured.
    assert SsdDetector(str(MODEL), backend="onnxruntime").runtime.choice == "onnxruntime fp32: the only option allowed by the configuration"


def test_when_the_runtimes_cannot_be_timed_the_first_allowed_runs_unremembered(monkeypatch, tmp_path):
    from orion_worker import runtimes

    def broken(*_args, **_kwargs):
        raise RuntimeError("the timing process ended without an answer (exit code -9)")

    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(runtimes, "time_apart", broken)
    rt = runtimes.open_runtime(str(MODEL), "auto", SHAPE)
    assert rt.name == "openvino:CPU"
    assert rt.choice == "openvino fp32: the first allowed; the runtimes could not be timed (the timing process ended without an answer (exit code -9))"
    assert not (tmp_path / "runtime-choice.json").exists(), "nothing remembered: the next start times them again"


def test_a_missing_int8_variant_is_left_out_unless_int8_is_required(tmp_path, monkeypatch, caplog):
    import logging

    from orion_worker.detectors import load_model_set

    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path))
    params = {"size": "s", "format": "ssd", "path": str(MODEL), "int8": str(tmp_path / "gone.int8.xml")}
    with caplog.at_level(logging.WARNING, logger="orion_worker"):
        models = load_model_set(params)
    assert "int8" not in models.backend
    assert any("gone.int8.xml not considered: file not found" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="model file not found"):
        load_model_set({**params, "precision": "int8"})
