"""A worker written from docs/worker-protocol.md alone, as someone integrating
their own model would: no import from the project (no SDK, no protocol module),
only the standard library and msgpack. tests/worker_contract.rs runs it through
the real daemon.

It announces the type `conformance`, maps the shared-memory region when it is
offered (or takes frames inline), answers every frame with a result whose `data`
is its own measurement of the pixels (the mean of the green channel), swaps its
"model" on `set_model`, and logs with the documented prefixes.
"""

import mmap
import os
import struct
import sys

import msgpack

OUT = sys.stdout.buffer
IN = sys.stdin.buffer


def send(body: dict) -> None:
    payload = msgpack.packb(body, use_bin_type=True)
    OUT.write(struct.pack(">I", len(payload)) + payload)
    OUT.flush()


def receive():
    header = IN.read(4)
    if len(header) < 4:
        return None  # end of input: the request to stop
    (length,) = struct.unpack(">I", header)
    body = IN.read(length)
    if len(body) < length:
        return None
    return msgpack.unpackb(body, raw=False)


def log(level: str, text: str) -> None:
    print(f"[{level}] {text}", file=sys.stderr, flush=True)


def arg(name: str, default: str) -> str:
    """A named argument (`--name value`): arguments come in no fixed order."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv[:-1]):
        if a == name:
            return argv[i + 1]
    return default


model = {"name": arg("--model-name", "unnamed"), "input_size": 0}
region = None
if os.environ.get("ORION_SHM_FD"):
    fd = int(os.environ["ORION_SHM_FD"])
    size = int(os.environ["ORION_SHM_SIZE"])
    region = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    log("INFO", f"mapped the shared-memory region ({size} bytes)")

send({
    "type": "ready",
    "protocol_version": 1,
    "inference_type": "conformance",
    "model": model,
    "pid": os.getpid(),
    "shm": region is not None,
})

while True:
    msg = receive()
    if msg is None:
        log("INFO", "stdin closed; exiting")
        sys.exit(0)
    if msg["type"] == "command":
        params = msg["params"]
        if msg["name"] == "set_model" and params.get("size"):
            model = {"name": params["size"], "input_size": 0}
            send({"type": "command_result", "id": msg["id"], "success": True,
                  "message": f"now running {params['size']}"})
        else:
            send({"type": "command_result", "id": msg["id"], "success": False,
                  "message": f"unknown command {msg['name']}"})
        continue
    if msg["type"] != "frame":
        log("WARNING", f"unknown message {msg['type']}")
        continue
    width, height = msg["width"], msg["height"]
    if msg.get("shm"):
        offset, length = msg["shm"]["offset"], msg["shm"]["length"]
        pixels = region[offset:offset + length]
        via = "shm"
    else:
        pixels = msg["data"]
        via = "inline"
    if len(pixels) != width * height * 3:
        send({"type": "error", "message": f"frame of {len(pixels)} bytes", "frame_seq": msg["seq"], "fatal": False})
        continue
    green = pixels[1::3 * 97]  # every 97th pixel's green byte
    send({
        "type": "result",
        "frame_seq": msg["seq"],
        "trace_id": msg["meta"]["trace_id"],
        "inference_type": "conformance",
        "detections": [],
        "person_count": 0,
        "model": model,
        "timing": {"preprocess_ms": 0.0, "inference_ms": 0.1, "postprocess_ms": 0.0, "total_ms": 0.1},
        "suggested_roi": None,
        "data": {"mean_green": sum(green) / len(green), "via": via, "camera": msg["meta"]["instance_id"]},
    })
