"""Orion worker protocol, version 1 (see docs/worker-protocol.md).

Framing, both directions: a 4-byte big-endian body length, then a MsgPack map
whose "type" key names the message. Builders below produce maps with keys in the
documented order and floats as float64, so that the bytes match the golden
fixtures shared with the Rust daemon.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Optional

import msgpack

PROTOCOL_VERSION = 1
# Upper bound for a message the worker accepts (a 4K RGB frame plus metadata).
DEFAULT_MAX_MESSAGE_LEN = 32 * 1024 * 1024

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid framed message."""


def encode(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def write_message(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(encode(message))
    out.flush()


def _read_exact(stream: BinaryIO, n: int) -> Optional[bytes]:
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == n:
                return None
            raise ProtocolError(f"stream ended inside a message ({n - remaining} of {n} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO, max_len: int = DEFAULT_MAX_MESSAGE_LEN) -> Optional[dict[str, Any]]:
    """Reads one message; None at a clean end of stream (between messages)."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length == 0:
        raise ProtocolError("empty message (length 0)")
    if length > max_len:
        raise ProtocolError(f"message length {length} exceeds the maximum of {max_len} bytes")
    body = _read_exact(stream, length)
    if body is None:
        raise ProtocolError("stream ended before the message body")
    try:
        message = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise ProtocolError(f"malformed message body: {e}") from e
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("message is not a map with a string `type`")
    return message


def model_info(name: str, input_size: int, backend: Optional[str] = None, choice: Optional[str] = None) -> dict[str, Any]:
    """`backend`: the runtime that runs the model (`openvino:CPU`, ...),
    optional; `choice`: why that runtime (in `ready` and `command_result`,
    not in every result)."""
    info: dict[str, Any] = {"name": str(name), "input_size": int(input_size)}
    if backend:
        info["backend"] = str(backend)
    if choice:
        info["choice"] = str(choice)
    return info


def ready(inference_type: str, model: dict[str, Any], pid: int, shm: bool = False, parallel: int = 1) -> dict[str, Any]:
    """`shm`: the worker mapped the shared-memory region it was offered;
    `parallel`: how many frames it works on at once (it answers in order)."""
    return {
        "type": "ready",
        "protocol_version": PROTOCOL_VERSION,
        "inference_type": inference_type,
        "model": model,
        "pid": int(pid),
        "shm": bool(shm),
        "parallel": int(parallel),
    }


def rect(x: float, y: float, width: float, height: float) -> dict[str, float]:
    return {"x": float(x), "y": float(y), "width": float(width), "height": float(height)}


def detection(bbox: dict[str, float], confidence: float, cls: str, keypoints: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """`keypoints`: the body's keypoints (pose models), see `keypoints`."""
    d: dict[str, Any] = {"bbox": bbox, "confidence": float(confidence), "class": cls}
    if keypoints is not None:
        d["keypoints"] = keypoints
    return d


def keypoints(names: Any, points: Any) -> list[dict[str, Any]]:
    """Named keypoints in full-frame pixels: `names[i]` at `points[i]` (x, y,
    score)."""
    return [
        {"name": str(n), "x": float(p[0]), "y": float(p[1]), "score": float(p[2])}
        for n, p in zip(names, points)
    ]


def timing(preprocess_ms: float, inference_ms: float, postprocess_ms: float, total_ms: float) -> dict[str, float]:
    return {
        "preprocess_ms": float(preprocess_ms),
        "inference_ms": float(inference_ms),
        "postprocess_ms": float(postprocess_ms),
        "total_ms": float(total_ms),
    }


def result(
    frame_seq: int,
    trace_id: str,
    inference_type: str,
    detections: list[dict[str, Any]],
    model: dict[str, Any],
    timing: dict[str, float],
    suggested_roi: Optional[dict[str, float]],
    data: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """`data`: the worker's own result object (JSON-safe values, at most 16 KiB as
    JSON), published in place of the detections; for types that find no boxes."""
    message = {
        "type": "result",
        "frame_seq": int(frame_seq),
        "trace_id": trace_id,
        "inference_type": inference_type,
        "detections": detections,
        "person_count": sum(1 for d in detections if d["class"] == "person"),
        "model": model,
        "timing": timing,
        "suggested_roi": suggested_roi,
    }
    if data is not None:
        message["data"] = data
    return message


def command_result(command_id: int, success: bool, message: str, model: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """`model`: the model the worker runs after the command (a model swap)."""
    out: dict[str, Any] = {"type": "command_result", "id": int(command_id), "success": bool(success), "message": message}
    if model is not None:
        out["model"] = model
    return out


def error(message: str, frame_seq: Optional[int] = None, fatal: bool = False) -> dict[str, Any]:
    return {
        "type": "error",
        "message": message,
        "frame_seq": None if frame_seq is None else int(frame_seq),
        "fatal": bool(fatal),
    }
