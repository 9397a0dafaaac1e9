"""The demo video decoded once into memory, as the daemon delivers frames
(GStreamer: decodebin, converted and scaled to packed RGB), for the
benchmarks that feed frames from memory."""

import subprocess

import numpy as np


def decode(video: str, width: int = 640, height: int = 480) -> np.ndarray:
    """Every frame of `video` as (n, height, width, 3) RGB uint8."""
    raw = subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={video}", "!", "decodebin", "!", "videoconvert", "!",
         "videoscale", "!", f"video/x-raw,format=RGB,width={width},height={height}", "!", "fdsink", "fd=1"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)
