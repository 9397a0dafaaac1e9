from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
IMAGES = Path(__file__).resolve().parent / "images"
MODEL = ROOT / "models" / "ssdlite_mobilenet_v2_coco.onnx"
FIXTURES = ROOT / "crates" / "orion-protocol" / "fixtures"


def load_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB"))


@pytest.fixture(scope="session")
def ssd():
    from orion_worker.detectors import ModelSet, SsdDetector

    return ModelSet("ssdlite", {300: SsdDetector(str(MODEL))})
