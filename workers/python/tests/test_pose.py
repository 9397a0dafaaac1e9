"""MoveNet MultiPose as the person detector: people with their keypoints, on
real photos of people (the room and walkers of the test images)."""

from __future__ import annotations

import numpy as np
import pytest

from orion_worker import protocol
from orion_worker.detectors import KEYPOINTS, MoveNetDetector
from orion_worker.geometry import Crop, keypoints_to_frame
from orion_worker.person_detector import PersonDetector

from conftest import POSE_MODEL, load_rgb, room_with


def torso_angle(kp: np.ndarray) -> float:
    """Degrees from vertical of the line from the hips' middle to the shoulders'."""
    shoulders = kp[[5, 6], :2].mean(axis=0)
    hips = kp[[11, 12], :2].mean(axis=0)
    dx, dy = shoulders - hips
    return float(np.degrees(np.arctan2(abs(dx), abs(dy))))


def test_a_person_standing_has_an_upright_torso_and_keypoints_on_the_body(movenet):
    frame = room_with("walker_dark.png")
    found = PersonDetector(movenet, 0.2).detect(frame, Crop(0, 0, 640, 480))
    assert len(found.scores) == 1, found.scores
    box, kp = found.boxes[0], found.keypoints[0]
    assert kp.shape == (17, 3)
    assert torso_angle(kp) < 20
    # The pasted photo spans x 200..~342, y 160..460: the body's keypoints lie on it.
    body = kp[kp[:, 2] >= 0.3]
    assert len(body) >= 8
    assert (body[:, 0] > 190).all() and (body[:, 0] < 355).all()
    assert (body[:, 1] > 150).all() and (body[:, 1] < 470).all()
    # Ankles below the hips below the shoulders (image y grows downwards).
    assert kp[15:17, 1].mean() > kp[11:13, 1].mean() > kp[5:7, 1].mean()
    assert box[0] < box[2] and box[1] < box[3]


@pytest.mark.parametrize("turn", [1, -1])
def test_a_person_on_the_floor_is_found_lying(movenet, turn):
    frame = room_with("walker_dark.png", turn=turn, at=(150, 460))
    found = PersonDetector(movenet, 0.2).detect(frame, Crop(0, 0, 640, 480))
    assert len(found.scores) >= 1, "the person on the floor was not found"
    assert torso_angle(found.keypoints[found.scores.argmax()]) > 70


def test_keypoints_map_back_from_a_crop_to_the_full_frame(movenet):
    frame = room_with("walker_dark.png")
    whole = PersonDetector(movenet, 0.2).detect(frame, Crop(0, 0, 640, 480))
    crop = Crop(150, 100, 300, 380)
    part = PersonDetector(movenet, 0.2).detect(frame, crop)
    assert len(part.scores) == 1
    sure = (whole.keypoints[0][:, 2] > 0.4) & (part.keypoints[0][:, 2] > 0.4)
    assert sure.sum() >= 8
    # The same joints, in full-frame pixels (a few pixels of model jitter).
    assert np.abs(whole.keypoints[0][sure, :2] - part.keypoints[0][sure, :2]).max() < 25


def test_turned_keypoints_come_back_where_they_were():
    crop = Crop(100, 50, 200, 120)
    point = (30.0, 80.0)  # x, y in the crop
    for k in (1, -1):
        turned = np.rot90(np.arange(120 * 200).reshape(120, 200), k)
        # Where the crop's point went in the turned image.
        ty, tx = np.argwhere(turned == int(point[1]) * 200 + int(point[0]))[0]
        kp = np.zeros((1, 17, 3))
        kp[0, 0] = (tx, ty, 0.9)
        back = keypoints_to_frame(kp, crop, k)
        assert abs(back[0, 0, 0] - (crop.x + point[0])) <= 1 and abs(back[0, 0, 1] - (crop.y + point[1])) <= 1
        assert back[0, 0, 2] == 0.9


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "rocket.jpg", "room.png"])
def test_no_person_where_there_is_none(movenet, name):
    image = load_rgb(name)
    found = PersonDetector(movenet, 0.2).detect(image, Crop(0, 0, image.shape[1], image.shape[0]))
    assert len(found.scores) == 0, found.scores


def test_the_result_names_each_keypoint_in_full_frame_pixels(movenet):
    frame = room_with("walker_grey.png")
    msg = PersonDetector(movenet, 0.2).process(frame, Crop(0, 0, 640, 480), {"seq": 3, "meta": {"trace_id": "t"}})
    assert msg["person_count"] == 1
    d = msg["detections"][0]
    assert [k["name"] for k in d["keypoints"]] == list(KEYPOINTS)
    for k in d["keypoints"]:
        assert 0 <= k["x"] <= 640 and 0 <= k["y"] <= 480 and 0 <= k["score"] <= 1
    # It encodes (floats as float64, like every other field).
    assert protocol.encode(msg)


def test_rest_areas_are_not_looked_at_turned_with_a_pose_model(movenet):
    """MoveNet finds people lying as they are: no turned looks (they would
    cost two inferences per rest zone)."""
    frame = room_with("walker_dark.png", turn=1, at=(150, 460))
    detector = PersonDetector(movenet, 0.2)
    plain = detector.detect(frame, Crop(0, 0, 640, 480))
    with_rest = detector.detect(frame, Crop(0, 0, 640, 480), rest=[Crop(100, 250, 500, 230)])
    assert len(plain.scores) == len(with_rest.scores) >= 1
    assert not movenet.turned_looks


def test_odd_input_sizes_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        MoveNetDetector(str(POSE_MODEL), input_size=250)


def test_a_malformed_output_is_an_error(movenet):
    det = movenet.pick(None)
    with pytest.raises(ValueError, match="expected"):
        det.decode(np.zeros((1, 6, 50)), 0.2, 1.0, 640, 480)
    # NaN rows are skipped, not reported.
    out = np.zeros((1, 6, 56))
    out[0, :, 55] = np.nan
    boxes, scores, kp = det.decode(out, 0.2, 1.0, 640, 480)
    assert len(scores) == 0
