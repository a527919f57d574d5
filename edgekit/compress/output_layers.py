"""The layers that write a model's outputs: the int8 searches' cheapest accuracy remedy leaves them in float.

A classifier's last layer turns features into the scores its decisions are read from, so its rounding error
lands on the decisions undiluted; that is why toolchains keep the first and last layers in higher precision.
Measured on the zoo (bench/zoo_timm.py, 2-core Xeon, VNNI): the output layer topped the measured sensitivity
ranking of the int8 failures, and leaving it alone in float raised resmlp_12_224's top-1 agreement with fp32
from 60.6 % to 89.4 %. It is one layer out of dozens, so it costs no measurable speed; the searches try it
right after plain int8 misses and, when it helps, keep it in float in every later candidate.

A layer writes an output when only operators that carry no weights and do not mix in other activations
(reshapes, transposes, a constant bias or scale, softmax, element-wise activations) lie between it and a graph
output. A stateful RNN's state output is written by its recurrent operator, which is not such a layer: only its
scores' layer is found, and a model with no such layer at all does not get the remedy.
"""

from __future__ import annotations

from pathlib import Path

MAX_OUTPUT_LAYERS = 4  # more than this (a dense prediction head on every scale): not "the output layer"

ONNX_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ONNX_SHAPE_ONLY = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Cast", "Softmax",
                   "LogSoftmax", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh")
ONNX_WITH_A_CONSTANT = ("Add", "Sub", "Mul", "Div")  # a bias or a scale: passed through when the other side is constant

TFLITE_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")
TFLITE_SHAPE_ONLY = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CAST", "SOFTMAX", "LOG_SOFTMAX", "RELU",
                     "RELU6", "LOGISTIC", "TANH", "DEQUANTIZE", "QUANTIZE")
TFLITE_WITH_A_CONSTANT = ("ADD", "SUB", "MUL", "DIV")


def onnx_output_layers(model) -> list[str]:
    """Names of the weight-bearing nodes of an ONNX ``model`` (a ModelProto) that write its outputs, in output
    order (an output written otherwise, as an RNN's state, adds none); [] when more than
    :data:`MAX_OUTPUT_LAYERS` are found."""
    g = model.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in g.node for o in n.output}

    def walk(tensor: str):
        node = producer.get(tensor)
        while node is not None and node.op_type not in ONNX_WEIGHTED:
            live = [i for i in node.input if i and i not in consts]
            if len(live) != 1 or not (node.op_type in ONNX_SHAPE_ONLY or node.op_type in ONNX_WITH_A_CONSTANT):
                return None
            node = producer.get(live[0])
        return node

    return _named([walk(o.name) for o in g.output], lambda n: n.name)


def onnx_output_layers_of(fp32_path: str | Path, work: str | Path) -> list[str]:
    """:func:`onnx_output_layers` named as onnxruntime's quantizer sees the file: on its pre-processed graph
    (shape inference and graph optimization rename and fuse nodes), the one ``nodes_to_exclude`` refers to."""
    import shutil

    import onnx

    from edgekit.export.onnx import pre_process, unshare_initializers

    folder = Path(work) / "output_layers"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        onnx.save_model(unshare_initializers(onnx.load(str(fp32_path))), str(folder / "unshared.onnx"))
        pre_process(folder / "unshared.onnx", folder / "pre.onnx")
        return onnx_output_layers(onnx.load(str(folder / "pre.onnx")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tflite_output_layers(fp32_tflite: str | Path) -> list[str]:
    """Output tensor names (what ai-edge-quantizer's ``float_ops`` take) of the weight-bearing operators of a
    float .tflite that write its outputs; [] as in :func:`onnx_output_layers`."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(fp32_tflite))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # noqa: SLF001 — operators with their tensors
    producer = {int(o): op for op in ops for o in op["outputs"]}
    computed = set(producer) | {d["index"] for d in it.get_input_details()}

    def constant(i: int) -> bool:
        return i < 0 or i not in computed

    def walk(index: int):
        op = producer.get(index)
        while op is not None and op["op_name"] not in TFLITE_WEIGHTED:
            live = [int(i) for i in op["inputs"] if not constant(int(i))]
            if len(live) != 1 or not (op["op_name"] in TFLITE_SHAPE_ONLY or op["op_name"] in TFLITE_WITH_A_CONSTANT):
                return None
            op = producer.get(live[0])
        return op

    return _named([walk(d["index"]) for d in it.get_output_details()],
                  lambda op: tensors[int(op["outputs"][0])]["name"])


def _named(found: list, name) -> list[str]:
    names = list(dict.fromkeys(name(f) for f in found if f is not None))
    return names if len(names) <= MAX_OUTPUT_LAYERS and all(names) else []
