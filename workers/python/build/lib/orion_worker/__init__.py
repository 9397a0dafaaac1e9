"""Orion inference workers.

- `protocol`: the wire contract (framing, message builders); the one module other
  workers import to talk to the daemon.
- `sdk`: the serve loop: ready handshake, frame dispatch, commands, stdout hygiene.
- `geometry`: crops, box mapping back to full-frame pixels, NMS, suggested ROI.
- `detectors`: ONNX Runtime person detectors (TF SSD export, YOLO v8/11 export).
- `person_detector`: the shipped worker program.
"""
