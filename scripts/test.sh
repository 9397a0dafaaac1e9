#!/usr/bin/env bash
# Runs every test: Rust unit, golden and integration tests (real Mosquitto, real
# GStreamer, real worker and model), then the Python worker tests.
# Needs scripts/setup.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test: run scripts/setup.sh first" >&2; exit 1; }

cargo test --release --workspace --locked
.venv/bin/python -m pytest -q workers/python
