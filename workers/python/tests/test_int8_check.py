"""The INT8 accuracy check: it tells a quantized model that loses people or
whose boxes shake from one that finds the same people; its record ties the
verdict to the very files; `auto` offers INT8 only where the record passed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from orion_worker import int8_check, runtime_choice
from orion_worker.detectors import Engine, SsdDetector
from orion_worker.int8_check import compare, compare_steadiness, labelled_scenes, still_clips, verdict, write_record
from orion_worker.int8_record import checked, record_path
from orion_worker.runtimes import open_runtime

from conftest import IMAGES, MODEL, ROOT

INT8 = ROOT / "models" / "ssdlite_mobilenet_v2_coco.int8.xml"
STILL = ROOT / "models" / "check" / "still_people.mp4"


class Losing:
    """A model that finds what `inner` finds, except in every other frame."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def detect(self, crop, confidence):
        found = self.inner.detect(crop, confidence)
        self.calls += 1
        if self.calls % 2:
            found.boxes, found.scores = found.boxes[:0], found.scores[:0]
        return found


class Shaking:
    """A model whose boxes move by 3 % of their size from frame to frame."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def detect(self, crop, confidence):
        found = self.inner.detect(crop, confidence)
        self.calls += 1
        size = (found.boxes[:, 2] - found.boxes[:, 0] + found.boxes[:, 3] - found.boxes[:, 1]) / 2
        found.boxes = found.boxes + (0.03 * size * (self.calls % 2))[:, None]
        return found


@pytest.fixture(scope="module")
def fp32():
    return SsdDetector(str(MODEL), engine=Engine("openvino", "fp32"))


@pytest.fixture(scope="module")
def scenes():
    return labelled_scenes(IMAGES)


def test_the_labelled_scenes_cover_what_a_care_room_shows(scenes):
    sets = {s.set for s in scenes}
    assert sets == {"standing", "lying", "partly", "night", "nobody"}
    assert all(s.people == (0 if s.set == "nobody" else 1) for s in scenes)


def test_a_model_that_loses_people_fails_and_the_same_model_passes(fp32, scenes):
    same = compare(fp32, fp32, scenes, 0.3)
    assert verdict(same) == [], same
    assert same["standing"]["fp32"] >= 8, "FP32 finds most people standing"
    losing = compare(fp32, Losing(fp32), scenes, 0.3)
    why = verdict(losing)
    assert any(w.startswith("standing: found") for w in why), why


def test_boxes_that_shake_on_still_people_fail(fp32):
    clips = still_clips(STILL)
    assert len(clips) == 4 and all(len(c) == int8_check.STILL_FRAMES for c in clips)
    steady = compare_steadiness(fp32, fp32, clips, 0.3)
    assert steady["fp32"]["pairs"] >= 29 and int8_check.steady_verdict(steady) == [], steady
    assert steady["fp32"]["move_p90"] < 0.02, "FP32 keeps a still person's box within the tracker's stillness"
    shaking = compare_steadiness(fp32, Shaking(fp32), clips, 0.3)
    assert int8_check.steady_verdict(shaking), shaking


def test_the_shipped_records_belong_to_the_shipped_files():
    for name in ("ssdlite_mobilenet_v2_coco", "movenet_multipose_lightning"):
        fp32, int8 = ROOT / "models" / f"{name}.onnx", ROOT / "models" / f"{name}.int8.xml"
        record = json.loads(record_path(int8).read_text())
        ok, why = checked(str(fp32), str(int8))
        assert ok == record["passed"], why
        if not ok:
            assert why.startswith("its accuracy check failed: "), why
        assert set(record["sets"]) >= {"standing @0.3", "lying @0.3", "nobody @0.3"} or set(record["sets"]) >= {"standing @0.2", "lying @0.2", "nobody @0.2"}


def copies(tmp_path: Path) -> tuple[Path, Path]:
    fp32, int8 = tmp_path / MODEL.name, tmp_path / INT8.name
    shutil.copy(MODEL, fp32)
    shutil.copy(INT8, int8)
    shutil.copy(INT8.with_suffix(".bin"), int8.with_suffix(".bin"))
    return fp32, int8


def passing(fp32: Path, int8: Path) -> None:
    """A record that says the check passed, for these files."""
    sets = {"standing": {"frames": 4, "people": 1, "fp32": 4, "int8": 4}}
    steady = {"fp32": {"pairs": 10, "move_p90": 0.01}, "int8": {"pairs": 10, "move_p90": 0.01}}
    assert write_record(str(fp32), str(int8), sets, 0.3, steady)["passed"]


def test_auto_offers_int8_only_with_a_passed_record_for_the_same_files(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path / "cache"))
    fp32, int8 = copies(tmp_path)
    shape = [1, 300, 300, 3]

    # No record: not offered, one warning says why.
    with caplog.at_level(logging.WARNING, logger="orion_worker"):
        rt = open_runtime(str(fp32), "auto", shape, int8=str(int8), sample=np.zeros(shape, np.uint8))
    assert "int8" not in rt.choice and "int8" not in rt.name
    assert any("not considered: no accuracy check record" in r.getMessage() for r in caplog.records)

    # A passed record for these files: offered and timed beside FP32.
    passing(fp32, int8)
    rt = open_runtime(str(fp32), "auto", shape, int8=str(int8), sample=np.zeros(shape, np.uint8))
    assert "openvino int8 " in rt.choice and "openvino fp32 " in rt.choice, rt.choice

    # The INT8 file changed since: unchecked again, never offered.
    caplog.clear()
    with open(int8.with_suffix(".bin"), "r+b") as f:
        f.seek(100)
        f.write(b"\x01\x02\x03\x04")
    runtime_choice._digests.clear()
    with caplog.at_level(logging.WARNING, logger="orion_worker"):
        rt = open_runtime(str(fp32), "auto", shape, int8=str(int8), sample=np.zeros(shape, np.uint8))
    assert "int8" not in rt.choice
    assert any("the models changed since their accuracy check" in r.getMessage() for r in caplog.records)


def test_int8_asked_for_outright_runs_int8_and_finds_people(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_CACHE_DIR", str(tmp_path))
    det = SsdDetector(str(MODEL), engine=Engine("auto", "int8", str(INT8)))
    assert det.runtime.name == "openvino:CPU/int8"
    assert det.runtime.choice == "openvino int8: the only option allowed by the configuration"
    from conftest import load_rgb

    found = det.detect(load_rgb("astronaut.png"), 0.5)
    assert len(found.scores) == 1 and found.scores[0] > 0.7, found.scores
    with pytest.raises(ValueError, match="runs on OpenVINO only"):
        SsdDetector(str(MODEL), engine=Engine("onnxruntime", "int8", str(INT8)))
    with pytest.raises(ValueError, match="no INT8 variant"):
        SsdDetector(str(MODEL), engine=Engine("auto", "int8"))
