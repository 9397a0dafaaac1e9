#!/usr/bin/env bash
# Orion benchmark harness (not part of the tests). Prints the table recorded in
# docs/benchmarks.md: the physical limit, Orion at full load (1 and 2 workers),
# overhead latency, daemon CPU and RSS (short and long run), a single-loop Python
# baseline, and the frame bus micro-benchmark. Needs scripts/setup.sh first.
#
#   bench/run.sh                      # full run (about 15 minutes)
#   BENCH_SECONDS=10 BENCH_LONG_MINUTES=2 bench/run.sh   # quick look
#   bench/run.sh cameras              # one daemon with 16 cameras versus 16
#                                     # daemons, then the most cameras at 2 Hz
#   bench/run.sh ui                   # daemon CPU with the live view off, on and
#                                     # idle, and with one viewer at 5 fps
#   bench/run.sh scenes               # presence before and after: people asleep
#                                     # in bed, in the dark, half in view
#   bench/run.sh outbox               # cost of the event outbox per event, and
#                                     # of a 10,000-event backlog (RSS, drain)
#   bench/run.sh falls --footage DIR  # falls on real footage through the daemon:
#                                     # alerts, delay, false alarms per clip
#   bench/run.sh pose --footage DIR   # SSDLite against the pose model (MoveNet):
#                                     # people found standing, down, everyday;
#                                     # false positives; cost per frame
#   bench/run.sh int8 --footage DIR   # FP32 against INT8 on the same footage:
#                                     # people found, false positives, how
#                                     # much still people's boxes move, cost
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/python -c 'import cv2, paho.mqtt, orion_worker, onnxruntime, openvino' 2>/dev/null || \
    bench/.venv/bin/pip install -q numpy onnxruntime openvino msgpack opencv-python-headless 'paho-mqtt>=2' -e workers/python
cargo build --release --locked -q
if [ "${1:-}" = cameras ]; then
    shift
    exec bench/.venv/bin/python bench/cameras.py "$@"
fi
if [ "${1:-}" = ui ]; then
    exec bench/.venv/bin/python bench/ui.py
fi
if [ "${1:-}" = scenes ]; then
    shift
    exec bench/.venv/bin/python bench/scenes.py "$@"
fi
if [ "${1:-}" = falls ]; then
    shift
    exec bench/.venv/bin/python bench/falls.py "$@"
fi
if [ "${1:-}" = pose ]; then
    shift
    exec bench/.venv/bin/python bench/pose.py "$@"
fi
if [ "${1:-}" = int8 ]; then
    shift
    exec bench/.venv/bin/python bench/int8.py "$@"
fi
if [ "${1:-}" = outbox ]; then
    cargo build --release --locked -q --example outbox_fill
    exec bench/.venv/bin/python bench/outbox.py
fi
exec bench/.venv/bin/python bench/run.py "$@"
