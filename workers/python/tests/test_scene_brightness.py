"""The scene brightness worker: its measurements on real images and over the
real serve loop (results carry its own `data` object)."""

from __future__ import annotations

import numpy as np

from orion_worker.scene_brightness import MAX_CAMERAS, SceneBrightness

from conftest import load_rgb
from test_sdk import frame_message, run


def test_brightness_darkness_and_motion_per_camera():
    worker = SceneBrightness(dark_threshold=40.0)
    image = load_rgb("astronaut.png")
    first = worker.measure(image, "room-1")
    assert 40.0 < first["brightness"] < 255.0 and first["dark"] is False
    assert first["motion"] is None, "no previous frame of this camera"
    same = worker.measure(image, "room-1")
    assert same["brightness"] == first["brightness"] and same["motion"] == 0.0
    night = (image * 0.1).astype(np.uint8)
    dark = worker.measure(night, "room-1")
    assert dark["dark"] is True and dark["brightness"] < 0.15 * first["brightness"]
    assert dark["motion"] > 0.1, "the lights went out: a large change"
    # Another camera has its own previous frame.
    assert worker.measure(night, "room-2")["motion"] is None
    assert worker.measure(image, "room-2")["motion"] == dark["motion"]


def test_previous_frames_are_bounded():
    worker = SceneBrightness()
    tiny = np.zeros((8, 8, 3), dtype=np.uint8)
    for i in range(MAX_CAMERAS + 10):
        worker.measure(tiny, f"cam-{i}")
    assert len(worker.previous) == MAX_CAMERAS
    assert "cam-0" not in worker.previous and f"cam-{MAX_CAMERAS + 9}" in worker.previous


def test_results_carry_data_and_no_boxes():
    image = load_rgb("coffee.png")
    replies = run(SceneBrightness(), [frame_message(1, image), frame_message(2, image)])
    assert replies[0]["type"] == "ready" and replies[0]["inference_type"] == "scene_brightness"
    first, second = replies[1:]
    assert first["type"] == "result" and first["detections"] == [] and first["person_count"] == 0
    assert set(first["data"]) == {"brightness", "dark", "motion"}
    assert first["data"]["motion"] is None and second["data"]["motion"] == 0.0
