#!/usr/bin/env bash
# Fuzzing campaign for the two parsers of untrusted input: the control command
# parser (anything on the control topic) and the worker codec (anything on a
# worker's stdout). Runs the property tests of crates/orion/tests/properties.rs
# with many more cases than the test run (2,000). Not part of scripts/test.sh.
#
#   scripts/fuzz.sh                          # 100,000 cases per property (about 5 s on 2 cores)
#   ORION_FUZZ_CASES=2000000 scripts/fuzz.sh   # a longer campaign (94 s on 2 cores, 2026-11-28: no failure)
#
# A failure prints the minimal failing input; add it as a regression test next
# to the properties and fix the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORION_FUZZ_CASES=${ORION_FUZZ_CASES:-100000}
echo "fuzz: $ORION_FUZZ_CASES cases per property" >&2
exec cargo test --release --locked -p orion --test properties -- --test-threads 2
