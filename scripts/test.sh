#!/usr/bin/env bash
# Runs the lints (rustfmt, clippy with warnings as errors, the layer and
# function-length check of scripts/check-structure.py), then every test: Rust
# unit, golden and integration tests (real Mosquitto, real GStreamer, real
# worker and model), then the Python worker tests. Every step runs even when an
# earlier one fails; the summary names the failures and the exit status is 1 if
# there were any.
# Needs scripts/setup.sh to have run.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test: run scripts/setup.sh first" >&2; exit 1; }

failed=()
cargo fmt --all --check || failed+=("cargo fmt --check (run cargo fmt --all)")
cargo clippy --release --workspace --all-targets --locked -- -D warnings || failed+=("cargo clippy")
# orionctl alone: without GStreamer, the outbox store and the embedded broker.
cargo clippy --release --locked -p orion --no-default-features --bin orionctl -- -D warnings ||
    failed+=("cargo clippy (orionctl without the daemon features)")
python3 scripts/check-structure.py || failed+=("scripts/check-structure.py (layers, long functions)")
# The integration tests mostly wait on real daemons, brokers and workers: four
# at a time per test binary (measured: the suite in 3/4 of the time with two).
RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test --release --workspace --locked --no-fail-fast ||
    failed+=("cargo test (see the failures above)")
.venv/bin/python -m pytest -q workers/python || failed+=("pytest workers/python")

if [ ${#failed[@]} -gt 0 ]; then
    printf 'test: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test: all passed" >&2
