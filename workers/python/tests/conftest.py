from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
IMAGES = Path(__file__).resolve().parent / "images"
MODEL = ROOT / "models" / "ssdlite_mobilenet_v2_coco.onnx"
POSE_MODEL = ROOT / "models" / "movenet_multipose_lightning.onnx"
FIXTURES = ROOT / "crates" / "orion-protocol" / "fixtures"


def pytest_sessionstart(session):
    """One cache for the whole run (compiled models, runtime choices): each
    model is timed once per run, not once per test, and the user's own cache
    is never touched."""
    if "ORION_CACHE_DIR" not in os.environ:
        os.environ["ORION_CACHE_DIR"] = session.config._orion_cache = tempfile.mkdtemp(prefix="orion-test-cache-")


def pytest_sessionfinish(session):
    cache = getattr(session.config, "_orion_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
        del os.environ["ORION_CACHE_DIR"]


def load_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB"))


@pytest.fixture(scope="session")
def ssd():
    from orion_worker.detectors import ModelSet, SsdDetector

    return ModelSet("ssdlite", {300: SsdDetector(str(MODEL))})


@pytest.fixture(scope="session")
def movenet():
    from orion_worker.detectors import ModelSet, MoveNetDetector

    return ModelSet("movenet", {256: MoveNetDetector(str(POSE_MODEL))})


def room_with(person: str, turn: int = 0, height: int = 300, at: tuple[int, int] = (200, 460)) -> np.ndarray:
    """The empty room of the test images (640x480) with the photo of a person
    pasted standing, or turned a quarter (`turn`: np.rot90's k) lying on the
    floor, the bottom of it at `at`'s y."""
    room = np.asarray(Image.open(IMAGES / "room.png").convert("RGB").resize((640, 480), Image.BILINEAR)).copy()
    img = Image.open(IMAGES / person).convert("RGB")
    img = np.asarray(img.resize((round(img.width * height / img.height), height), Image.BILINEAR))
    if turn:
        img = np.ascontiguousarray(np.rot90(img, turn))
    h, w = img.shape[:2]
    x, y = at[0], at[1] - h
    room[y : y + h, x : x + w] = img
    return room
