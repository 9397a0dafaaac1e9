from __future__ import annotations

import numpy as np

from orion_worker.geometry import Crop, crop_to_frame, nms, resize_bilinear, suggested_roi


def test_crop_from_roi_is_clamped_to_the_frame():
    roi = {"crop": {"x": 600, "y": -5, "width": 100, "height": 1000}}
    assert Crop.from_roi(roi, 640, 480) == Crop(600, 0, 40, 480)
    assert Crop.from_roi(None, 640, 480) == Crop(0, 0, 640, 480)


def test_crop_to_frame_shifts_and_clips():
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [-5.0, 0.0, 500.0, 30.0]])
    out = crop_to_frame(boxes, Crop(100, 200, 300, 100))
    assert out.tolist() == [[110.0, 220.0, 150.0, 260.0], [100.0, 200.0, 400.0, 230.0]]


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]


def test_suggested_roi_merges_and_expands():
    boxes = np.array([[100.0, 100.0, 200.0, 200.0], [300.0, 150.0, 400.0, 300.0]])
    roi = suggested_roi(boxes, 1000, 1000)
    # union 100..400 x 100..300, grown by 15 % (7.5 % per side)
    assert np.allclose([roi["x"], roi["y"], roi["width"], roi["height"]], [0.0775, 0.085, 0.345, 0.23])
    assert suggested_roi(np.zeros((0, 4)), 10, 10) is None


def test_resize_bilinear_keeps_flat_images_flat_and_shapes_right():
    img = np.full((40, 60, 3), 77, dtype=np.uint8)
    out = resize_bilinear(img, 300, 300)
    assert out.shape == (300, 300, 3) and (out == 77).all()


def test_final_boxes_drop_overlaps_and_parts_of_a_better_box():
    import numpy as np

    from orion_worker.geometry import final_boxes

    boxes = np.array(
        [
            [100, 100, 300, 500],  # the person
            [105, 102, 300, 495],  # the same person again (IoU ~0.95)
            [110, 110, 200, 300],  # a part of them (inside the first)
            [400, 100, 600, 500],  # someone else
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.8, 0.95, 0.7], dtype=np.float32)
    kept = final_boxes(boxes, scores).tolist()
    # The repeat and the part go, whichever scored higher; the other person stays.
    assert kept == [0, 3], kept
    assert final_boxes(np.zeros((0, 4)), np.zeros(0)).size == 0


def test_boxes_found_in_a_turned_crop_land_where_the_thing_is():
    from orion_worker.geometry import turned_back

    # A 3x2 block inside a 100x60 crop at (10, 20) of the frame.
    image = np.zeros((60, 100), dtype=np.uint8)
    image[30:32, 40:43] = 1
    crop = Crop(10, 20, 100, 60)
    for k in (1, -1):
        turned = np.rot90(image, k)
        ys, xs = np.nonzero(turned)
        found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)
        back = turned_back(found, crop, k)
        assert back.tolist() == [[50.0, 50.0, 53.0, 52.0]], (k, back)


def test_look_crops_skip_what_is_not_a_rect():
    from orion_worker.geometry import look_crops

    crops = look_crops([{"x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5}, {"x": "a"}, None, {"x": 0, "y": 0, "width": 0.001, "height": 0.5}], 640, 480)
    assert crops == [Crop(320, 240, 320, 240)]
    assert look_crops("junk", 640, 480) == []
