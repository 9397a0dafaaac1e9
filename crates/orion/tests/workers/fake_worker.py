"""A scripted worker for supervision tests, speaking the real protocol.

    fake_worker.py MODE PIDFILE [daemon-appended model arguments ...]

MODE: `echo` answers every frame with an empty result (and `set_model` with
success for a path ending in good.onnx, failure otherwise); `crash` exits with status 3
on the first frame; `hang` never answers a frame; `garbage` writes a 4 GiB length
prefix on the first frame; `random` writes 64 KiB of random bytes on the first frame;
`truncated` writes a third of a message on the first frame and closes its output;
`slowswap` is `echo` but takes 10 s to answer `set_model` (on its main loop: no
frame is read meanwhile); `slow-N` is `echo` but takes N milliseconds per frame (a
worker of known capacity); `invalid` answers every other frame with a result that
breaks the contract (confidence 1.5, person_count 7 with one detection, a box
outside the frame, a NaN timing, in turn) and the others with one valid person;
`othertype` answers every other frame with a result of another inference_type;
`swarm` answers every frame with 10,000 person boxes (a model without NMS): a
100x100 grid over the frame of which 100 boxes are confident, another 100
every 5 s, so that people come and go in a flood; `visits` answers with one
person for 3 s, then nobody for 3 s, and so on (a visit every 6 s); `pairs`
says in `ready` that it works on two frames at once, takes two before it
answers either, and answers them in order (a daemon that sends one at a time
gets nothing back).
Each start appends the pid to PIDFILE and logs one line
per level on stderr.
"""

import os
import sys
import time

from orion_worker import protocol

mode, pidfile = sys.argv[1], sys.argv[2]
with open(pidfile, "a") as f:
    f.write(f"{os.getpid()}\n")
out = sys.stdout.buffer
for level in ("ERROR", "WARNING", "INFO", "DEBUG"):
    print(f"[{level}] fake worker {mode} says {level.lower()}", file=sys.stderr, flush=True)
if mode == "pairs":
    model = protocol.model_info("fake", 0, "fake:CPU", "fake fp32: fastest of fake fp32 1.0 ms, slow fp32 2.0 ms (measured now)")
    protocol.write_message(out, protocol.ready("fake_detection", model, os.getpid(), parallel=2))
else:
    protocol.write_message(out, protocol.ready("fake_detection", protocol.model_info("fake", 0), os.getpid()))
held = []
while True:
    msg = protocol.read_message(sys.stdin.buffer)
    if msg is None:
        sys.exit(0)
    if msg["type"] == "command":
        if mode == "slowswap":
            time.sleep(10)
        # set_model succeeds for a path ending in good.onnx and fails otherwise.
        ok = msg["params"].get("path", "").endswith("good.onnx")
        reply = "swapped to " + msg["params"].get("size", "?") if ok else "model file not found"
        protocol.write_message(out, protocol.command_result(msg["id"], ok, reply))
        continue
    if msg["type"] != "frame":
        continue
    if mode.startswith("slow-"):
        time.sleep(int(mode[len("slow-"):]) / 1000.0)
    if mode == "crash":
        sys.exit(3)
    if mode == "hang":
        time.sleep(3600)
    if mode == "garbage":
        out.write(b"\xff\xff\xff\xff" + b"x" * 64)
        out.flush()
        time.sleep(3600)
    if mode == "random":
        out.write(os.urandom(64 * 1024))
        out.flush()
        time.sleep(3600)
    if mode == "truncated":
        # A header announcing 1000 bytes, 10 of them, then the end of the output.
        out.write((1000).to_bytes(4, "big") + b"\x85" + b"x" * 9)
        out.flush()
        os.close(1)
        sys.stdout = None
        time.sleep(3600)
    result = protocol.result(
        msg["seq"], msg["meta"]["trace_id"], "fake_detection", [], protocol.model_info("fake", 0),
        protocol.timing(0.1, 0.2, 0.3, 0.6), None,
    )
    if mode == "invalid":
        person = {"bbox": {"x": 10.0, "y": 20.0, "width": 100.0, "height": 200.0}, "confidence": 0.9, "class": "person"}
        result["detections"] = [person]
        result["person_count"] = 1
        if msg["seq"] % 2 == 0:
            kind = (msg["seq"] // 2) % 4
            if kind == 0:
                person["confidence"] = 1.5
            elif kind == 1:
                result["person_count"] = 7
            elif kind == 2:
                person["bbox"]["x"] = float(msg["width"])
            else:
                result["timing"]["total_ms"] = float("nan")
    if mode == "swarm":
        w, h = msg["width"] / 100.0, msg["height"] / 100.0
        group = int(time.time() / 5) % 2
        dets = []
        for i in range(10_000):
            confident = (i // 100) % 10 == 0 and (i % 100) % 10 == 5 * group
            dets.append({
                "bbox": {"x": (i % 100) * w, "y": (i // 100) * h, "width": w, "height": h},
                "confidence": 0.9 if confident else 0.1,
                "class": "person",
            })
        result["detections"] = dets
        result["person_count"] = len(dets)
    if mode == "visits" and int(time.time() / 3) % 2 == 0:
        # At the frame's left edge: each time gone through that exit.
        result["detections"] = [{"bbox": {"x": 0.0, "y": 100.0, "width": 120.0, "height": 300.0}, "confidence": 0.9, "class": "person"}]
        result["person_count"] = 1
    if mode == "othertype" and msg["seq"] % 2 == 0:
        result["inference_type"] = "other_type"
    if mode == "pairs":
        held.append(result)
        if len(held) < 2:
            continue
        for r in held:
            protocol.write_message(out, r)
        held.clear()
        continue
    protocol.write_message(out, result)
