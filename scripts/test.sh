#!/usr/bin/env bash
# Runs every test: Rust unit, golden and integration tests (real Mosquitto, real
# GStreamer, real worker and model), then the Python worker tests. Every test
# binary runs even when an earlier one fails; the summary names the failures
# and the exit status is 1 if there were any.
# Needs scripts/setup.sh to have run.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test: run scripts/setup.sh first" >&2; exit 1; }

failed=()
cargo test --release --workspace --locked --no-fail-fast || failed+=("cargo test (see the failures above)")
.venv/bin/python -m pytest -q workers/python || failed+=("pytest workers/python")

if [ ${#failed[@]} -gt 0 ]; then
    printf 'test: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test: all passed" >&2
