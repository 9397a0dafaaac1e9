"""Writes a tiny YOLO-layout ONNX model for tests: input [1, 3, SIZE, SIZE], output
[1, 84, 1] holding one person box centered in the input (half its height, a
quarter of its width, score 0.9), whatever the image.

    make_yolo.py OUTPUT SIZE
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out, size = sys.argv[1], int(sys.argv[2])
pred = np.zeros((1, 84, 1), dtype=np.float32)
pred[0, :4, 0] = (size / 2, size / 2, size / 4, size / 2)
pred[0, 4, 0] = 0.9
graph = helper.make_graph(
    [
        helper.make_node("ReduceSum", ["images"], ["sum"], keepdims=0),
        helper.make_node("Mul", ["sum", "zero"], ["nothing"]),
        helper.make_node("Add", ["pred", "nothing"], ["output0"]),
    ],
    "tiny_yolo",
    [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
    [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 1])],
    initializer=[numpy_helper.from_array(pred, "pred"), numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, out)
