"""The golden byte fixtures shared with the Rust crate `orion-protocol`: the
Python side must decode what Rust encodes and encode the same bytes."""

from __future__ import annotations

import io
import struct

import pytest

from orion_worker import protocol

from conftest import FIXTURES


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(name: str) -> dict:
    msg = protocol.read_message(io.BytesIO(fixture(name)))
    assert msg is not None
    return msg


MODEL = protocol.model_info("ssdlite", 300)
CHOSEN = protocol.model_info(
    "movenet", 256, "openvino:CPU/int8",
    "openvino int8: fastest of openvino int8 10.9 ms, openvino fp32 14.3 ms (measured 2026-11-30T13:20:00Z)",
)


def test_decodes_frame_fixture():
    msg = decode("frame.bin")
    assert msg["type"] == "frame" and msg["seq"] == 42
    assert (msg["width"], msg["height"], msg["format"]) == (4, 2, "rgb24")
    assert msg["data"] == bytes(range(24))
    meta = msg["meta"]
    assert meta["instance_id"] == "room-101-cam" and meta["trace_id"] == "room-101-cam-42"
    assert meta["timestamp"] == "2026-11-27T21:00:00.250000Z"
    roi = meta["roi_processing"]
    assert roi["source"] == "full_frame" and roi["target_size"] == 640
    assert roi["crop"] == {"x": 0, "y": 0, "width": 4, "height": 2}


def test_decodes_shared_memory_frame_fixture():
    msg = decode("frame_shm.bin")
    assert msg["seq"] == 43 and msg["data"] == b""
    assert msg["shm"] == {"offset": 0, "length": 24}
    assert msg["meta"]["roi_processing"]["target_size"] == 320
    assert "shm" not in decode("frame.bin"), "inline frames carry no shm key"


def test_decodes_command_fixture():
    msg = decode("command.bin")
    assert msg == {"type": "command", "id": 7, "name": "set_model", "params": {"path": "models/yolo11s.onnx", "size": "s"}}


@pytest.mark.parametrize(
    "name,message",
    [
        ("ready.bin", protocol.ready("person_detection", CHOSEN, 4242, shm=True, parallel=2)),
        (
            "result.bin",
            protocol.result(
                frame_seq=42,
                trace_id="room-101-cam-42",
                inference_type="person_detection",
                detections=[protocol.detection(protocol.rect(120.5, 40.25, 200, 380.75), 0.9375, "person")],
                model=MODEL,
                timing=protocol.timing(1.5, 14.25, 0.5, 16.25),
                suggested_roi=protocol.rect(0.125, 0.0625, 0.5, 0.875),
            ),
        ),
        (
            "result_pose.bin",
            protocol.result(
                frame_seq=43,
                trace_id="room-101-cam-43",
                inference_type="person_detection",
                detections=[
                    protocol.detection(
                        protocol.rect(100, 300, 320.5, 90.25),
                        0.3125,
                        "person",
                        protocol.keypoints(["left_shoulder", "left_hip"], [(180.5, 340, 0.625), (300.25, 350, 0.5)]),
                    )
                ],
                model=protocol.model_info("movenet", 256),
                timing=protocol.timing(0.5, 15.0, 0.25, 15.75),
                suggested_roi=None,
            ),
        ),
        ("command_result.bin", protocol.command_result(7, False, "model file not found: models/yolo11s.onnx")),
        ("command_result_model.bin", protocol.command_result(8, True, "model movenet loaded", CHOSEN)),
        ("error.bin", protocol.error("frame has 23 bytes, expected 24", frame_seq=42)),
    ],
)
def test_worker_messages_encode_to_the_fixture_bytes(name, message):
    assert protocol.encode(message) == fixture(name)
    assert decode(name) == message


def test_rejects_oversized_length_without_reading_it():
    stream = io.BytesIO(struct.pack(">I", 0xFFFFFFFF) + b"abc")
    with pytest.raises(protocol.ProtocolError, match="exceeds the maximum"):
        protocol.read_message(stream)
    assert stream.tell() == 4, "the announced body was not read"


def test_truncated_message_is_an_error_and_clean_eof_is_none():
    data = fixture("ready.bin")
    assert protocol.read_message(io.BytesIO(b"")) is None
    with pytest.raises(protocol.ProtocolError, match="ended"):
        protocol.read_message(io.BytesIO(data[:-3]))


def test_non_map_body_is_an_error():
    body = b"\x93\x01\x02\x03"
    with pytest.raises(protocol.ProtocolError, match="map"):
        protocol.read_message(io.BytesIO(struct.pack(">I", len(body)) + body))
