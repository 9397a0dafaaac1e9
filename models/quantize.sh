#!/usr/bin/env bash
# Makes the INT8 variants of the shipped models and checks them against FP32
# (models/quantize.py; see models/README.md). Works in a throw-away venv with
# NNCF (about 300 MB of downloads, a minute or two); the project's own venv is
# not touched. Usage: models/quantize.sh [ssd] [movenet]   (default: both)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The same OpenVINO as the worker's venv: the IR is made by the runtime that runs it.
openvino=$("$here/../.venv/bin/python" -c 'import openvino; print(openvino.__version__.split("-")[0])' 2>/dev/null || echo 2026.4.1)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q nncf==3.4.0 "openvino==$openvino" onnxruntime==1.32.0 onnx==1.23.2 opencv-python-headless numpy
ORION_CACHE_DIR="$work/cache" "$work/venv/bin/python" "$here/quantize.py" ${@:-ssd movenet}
(cd "$here" && sha256sum ./*.int8.xml ./*.int8.bin | sed 's| \./| |')
echo "update models/SHA256SUMS with the lines above if the models changed on purpose" >&2
