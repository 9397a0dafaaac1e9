#!/usr/bin/env bash
# Sets Orion up on a fresh Debian 12 machine, run as root from anywhere:
#   - apt: GStreamer (dev + plugins base/good/bad/ugly/libav), gst-rtsp-server dev,
#     mosquitto + clients, Python venv support, chromium (the live view's browser
#     tests), dpkg-dev and lintian (the Debian package's build and tests);
#   - the Python venv .venv with the worker package and its test dependencies,
#     and Playwright (drives the system chromium; it downloads no browser);
#   - a check of the shipped model;
#   - the release binaries (target/release/oriond).
# Idempotent: a second run changes nothing. One line per step on stderr; a step's
# own output only when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
step() {
    local what=$1
    shift
    local out
    say "$what ..."
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" | tail -n 60 >&2
        say "FAILED: $what"
        exit 1
    fi
}

APT_PACKAGES=(
    pkg-config
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
    libgstrtspserver-1.0-dev
    mosquitto mosquitto-clients
    python3 python3-venv python3-pip python3-gi gir1.2-gst-rtsp-server-1.0
    curl openssl
    chromium
    dpkg-dev lintian adduser iproute2
)

say "check the apt packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "these packages are missing and installing them needs root: ${missing[*]}"; exit 1; }
    step "apt-get update" apt-get update -q
    step "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { say "cargo not found: install the Rust toolchain (rustup) first"; exit 1; }
# edition 2024 and rust-version 1.95 (Cargo.toml): Debian's own rustc is older.
rustc_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
[ "${rustc_minor:-0}" -ge 95 ] || { say "Rust 1.95 or newer is needed (found: $(rustc --version 2>&1)); install it with rustup"; exit 1; }
# The lints of scripts/test.sh.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
    step "add the clippy and rustfmt components" rustup component add clippy rustfmt
fi

if [ ! -x .venv/bin/python ]; then
    step "create the Python venv" python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import orion_worker, onnxruntime, openvino, cv2, numpy, msgpack, pytest, PIL, onnx, prometheus_client' 2>/dev/null; then
    step "upgrade pip" .venv/bin/pip install -q --upgrade pip
    step "install the Python worker" .venv/bin/pip install -q -e 'workers/python[test]'
fi

if ! .venv/bin/python -c 'import playwright.sync_api' 2>/dev/null; then
    step "install Playwright (browser tests of the live view)" .venv/bin/pip install -q 'playwright>=1.50,<2'
fi

step "check the shipped model (models/SHA256SUMS)" bash -c "cd models && sha256sum --quiet -c SHA256SUMS"

step "build the release binaries (a few minutes the first time)" cargo build --release --workspace --locked -q
# The tests share the release profile and features: building them now means
# scripts/test.sh compiles nothing.
step "build the tests" cargo test --release --workspace --locked --no-run -q
say "OK (run: ./target/release/oriond --config config/orion.yaml)"
