"""Build step, run once by hand: MediaPipe's BlazePose .tflite models -> the ONNX files beside this script.

Not imported by the console. It needs packages the console does not (a scratch virtualenv):

    python3 -m venv /tmp/convvenv
    /tmp/convvenv/bin/pip install tflite==2.18.0 ai-edge-litert==2.3.0 onnx==1.23.2 onnxruntime==1.32.0 numpy
    pip download --no-deps --only-binary=:all: --python-version 3.11 mediapipe==0.10.21 -d /tmp/mp
    /tmp/convvenv/bin/python services/models/data/convert_blazepose.py /tmp/mp/mediapipe-0.10.21-*.whl

It reads ``pose_detection.tflite`` and ``pose_landmark_full.tflite`` out of the wheel (the models behind
``mediapipe.solutions.pose`` with ``model_complexity=1``), rewrites their graphs op by op as ONNX (NCHW,
batch dimension free, fp16 weights kept as fp16 with a Cast that ONNX Runtime folds at load), keeps only the
outputs the console reads, and checks the ONNX outputs against the TFLite interpreter on random inputs.
Only the ops these two models use are handled; anything else stops the conversion.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# (member of the wheel, output file, outputs kept by position: the detector's boxes and scores; the landmark
# model's 39x5 landmarks and its pose-presence flag, not its segmentation mask, heatmap or world landmarks)
MODELS = [
    ("mediapipe/modules/pose_detection/pose_detection.tflite", "blazepose_detector.onnx", [0, 1], ["boxes", "scores"]),
    ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite", "blazepose_landmark_full.onnx", [0, 1],
     ["landmarks", "presence"]),
]
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class _Graph:
    """ONNX nodes and initializers under construction, with the TFLite tensors they stand for."""

    def __init__(self, model, interpreter) -> None:  # type: ignore[no-untyped-def]
        self.model, self.sub, self.nodes, self.inits = model, model.Subgraphs(0), [], []
        self.const: dict[int, np.ndarray] = {}
        self.half: set[int] = set()  # constants whose source was fp16 (stored as fp16)
        self.nchw: set[int] = set()  # activations laid out NCHW
        self.done: dict[tuple[int, str], str] = {}
        self.pending: list = []
        self.count = 0
        for i in range(self.sub.TensorsLength()):
            t = self.sub.Tensors(i)
            b = model.Buffers(t.Buffer())
            if b is not None and b.DataLength() > 0 and t.Sparsity() is None:
                dtype = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}[t.Type()]
                self.const[i] = np.frombuffer(b.DataAsNumpy().tobytes(), dtype=dtype).reshape(self.shape(i))
        self.interpreter = interpreter

    def shape(self, i: int) -> list[int]:
        return [int(d) for d in self.sub.Tensors(i).ShapeAsNumpy()]

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def init(self, value: np.ndarray, *, fp16: bool = False) -> str:
        from onnx import TensorProto, helper, numpy_helper

        name = self.fresh("c")
        if fp16:
            self.inits.append(numpy_helper.from_array(value.astype(np.float16), name + "_h"))
            self.nodes.append(helper.make_node("Cast", [name + "_h"], [name], to=TensorProto.FLOAT))
        else:
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def ref(self, i: int, layout: str = "") -> str:
        """The ONNX name of TFLite tensor ``i``; constants become initializers (conv/dw/chan re-laid out)."""
        if i not in self.const:
            return f"t{i}"
        if (i, layout) not in self.done:
            v = self.const[i]
            if layout == "conv":
                v = v.transpose(0, 3, 1, 2)
            elif layout == "dw":
                v = v.transpose(3, 0, 1, 2)
            elif layout == "chan":
                v = v.reshape(-1, 1, 1) if v.ndim == 1 else v.transpose(0, 3, 1, 2) if v.ndim == 4 else v
            self.done[(i, layout)] = self.init(np.ascontiguousarray(v), fp16=i in self.half)
        return self.done[(i, layout)]

    def act(self, out: str, fused: int) -> str:
        """Name for the op's own output, with TFLite's fused activation (none, ReLU, ReLU6) applied after it."""
        from onnx import helper

        if fused == 0:
            return out
        y = self.fresh("a")
        if fused == 1:
            self.pending.append(helper.make_node("Relu", [y], [out]))
        elif fused == 3:
            lo, hi = self.init(np.array(0, np.float32)), self.init(np.array(6, np.float32))
            self.pending.append(helper.make_node("Clip", [y, lo, hi], [out]))
        else:
            raise NotImplementedError(f"fused activation {fused}")
        return y


def _same_pads(in_hw: list[int], kernel: tuple[int, int], stride: tuple[int, int], dilation=(1, 1)) -> list[int]:
    """TensorFlow's SAME padding (the extra pixel after) as ONNX pads [top, left, bottom, right]."""
    pads = []
    for n, k, s, d in zip(in_hw, kernel, stride, dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]


def _op_name(model, op) -> str:  # type: ignore[no-untyped-def]
    from tflite.BuiltinOperator import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    code = model.OperatorCodes(op.OpcodeIndex())
    return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]


def _options(op, cls):  # type: ignore[no-untyped-def]
    opts, table = cls(), op.BuiltinOptions()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _fold_constants(g: _Graph, ops: list) -> None:
    """DENSIFY (sparse weights) and DEQUANTIZE (fp16 weights) only make constants: take their values."""
    for op in ops:
        if _op_name(g.model, op) in ("DENSIFY", "DEQUANTIZE"):
            src, out = int(op.Inputs(0)), int(op.Outputs(0))
            value = g.interpreter.get_tensor(out).astype(np.float32)
            if src in g.const:  # a plain fp16 buffer: decoding it here must give the interpreter's values
                assert np.array_equal(g.const[src].astype(np.float32), value)
            if g.sub.Tensors(src).Type() == 1 or src in g.half:
                g.half.add(out)
            g.const[out] = value


def _convert_op(g: _Graph, op) -> None:  # type: ignore[no-untyped-def]
    import tflite
    from onnx import helper

    name = _op_name(g.model, op)
    ins, out = [int(x) for x in op.InputsAsNumpy()], int(op.Outputs(0))
    node = helper.make_node
    if name in ("DENSIFY", "DEQUANTIZE"):
        return
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = _options(op, tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        w, xs = g.const[ins[1]], g.shape(ins[0])
        k, s, d = (w.shape[1], w.shape[2]), (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
        attrs = dict(kernel_shape=list(k), strides=list(s), dilations=list(d),
                     pads=_same_pads(xs[1:3], k, s, d) if o.Padding() == 0 else [0, 0, 0, 0])
        if name == "DEPTHWISE_CONV_2D":
            assert w.shape[3] == xs[3], "depth multiplier 1 only"
            attrs["group"] = xs[3]
        inputs = [g.ref(ins[0]), g.ref(ins[1], "dw" if name == "DEPTHWISE_CONV_2D" else "conv")]
        inputs += [g.ref(ins[2])] if len(ins) > 2 and ins[2] >= 0 else []
        g.nodes.append(node("Conv", inputs, [g.act(f"t{out}", o.FusedActivationFunction())], **attrs))
    elif name == "ADD":
        o = _options(op, tflite.AddOptions)
        g.nodes.append(node("Add", [g.ref(i, "chan") for i in ins], [g.act(f"t{out}", o.FusedActivationFunction())]))
    elif name == "PAD":
        p = g.const[ins[1]][[0, 3, 1, 2]]
        g.nodes.append(node("Pad", [g.ref(ins[0]), g.init(np.concatenate([p[:, 0], p[:, 1]]).astype(np.int64))],
                            [f"t{out}"], mode="constant"))
    elif name == "MAX_POOL_2D":
        o = _options(op, tflite.Pool2DOptions)
        k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pads = _same_pads(g.shape(ins[0])[1:3], k, s) if o.Padding() == 0 else [0, 0, 0, 0]
        g.nodes.append(node("MaxPool", [g.ref(ins[0])], [g.act(f"t{out}", o.FusedActivationFunction())],
                            kernel_shape=list(k), strides=list(s), pads=pads))
    elif name == "RESIZE_BILINEAR":
        o = _options(op, tflite.ResizeBilinearOptions)
        mode = "align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric"
        xs, ys = g.shape(ins[0]), g.shape(out)
        scales = g.init(np.array([1, 1, ys[1] / xs[1], ys[2] / xs[2]], np.float32))
        g.nodes.append(node("Resize", [g.ref(ins[0]), "", scales], [f"t{out}"], mode="linear",
                            coordinate_transformation_mode=mode))
    elif name == "CONCATENATION":
        o = _options(op, tflite.ConcatenationOptions)
        axis = o.Axis() % len(g.shape(out))
        if ins[0] in g.nchw:
            axis = NHWC_TO_NCHW_AXIS[axis]
        g.nodes.append(node("Concat", [g.ref(i) for i in ins], [g.act(f"t{out}", o.FusedActivationFunction())],
                            axis=axis))
    elif name == "DEPTH_TO_SPACE":
        o = _options(op, tflite.DepthToSpaceOptions)
        g.nodes.append(node("DepthToSpace", [g.ref(ins[0])], [f"t{out}"], blocksize=o.BlockSize(), mode="DCR"))
    elif name == "RESHAPE":
        x = g.ref(ins[0])
        if ins[0] in g.nchw:  # TFLite flattens NHWC: go back to it first
            y = g.fresh("nhwc")
            g.nodes.append(node("Transpose", [x], [y], perm=[0, 2, 3, 1]))
            x = y
        target = g.shape(out)
        assert len(target) != 4, "4-D reshape not handled"
        target[0] = 0  # keep the (free) batch dimension
        g.nodes.append(node("Reshape", [x, g.init(np.array(target, np.int64))], [f"t{out}"]))
        return
    elif name == "LOGISTIC":
        g.nodes.append(node("Sigmoid", [g.ref(ins[0])], [f"t{out}"]))
    else:
        raise NotImplementedError(f"TFLite op {name}")
    if any(i in g.nchw for i in ins if i not in g.const):
        g.nchw.add(out)


def convert(tflite_path: Path, onnx_path: Path, keep: list[int], names: list[str]):  # type: ignore[no-untyped-def]
    """Convert one model; returns the TFLite interpreter (for the check)."""
    import onnx
    import tflite
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from onnx import TensorProto, helper
    from onnx.utils import Extractor

    model = tflite.Model.GetRootAsModel(tflite_path.read_bytes(), 0)
    # the reference kernels (no XNNPACK) keep every tensor, the densified and dequantized weights among them
    interpreter = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    interpreter.invoke()
    g = _Graph(model, interpreter)
    ops = [g.sub.Operators(k) for k in range(g.sub.OperatorsLength())]
    _fold_constants(g, ops)
    first = int(g.sub.Inputs(0))
    g.nchw.add(first)
    g.nodes.append(helper.make_node("Identity", ["input"], [f"t{first}"]))
    for op in ops:
        _convert_op(g, op)
        g.nodes.extend(g.pending)
        g.pending.clear()
    outputs = []
    for pos, name in zip(keep, names):
        i = int(g.sub.Outputs(pos))
        perm = [0, 2, 3, 1] if i in g.nchw else None
        g.nodes.append(helper.make_node("Transpose", [f"t{i}"], [name], perm=perm) if perm
                       else helper.make_node("Identity", [f"t{i}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *g.shape(i)[1:]]))
    n, h, w, c = g.shape(first)
    graph = helper.make_graph(g.nodes, "blazepose", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   ["N", c, h, w])], outputs, g.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="convert_blazepose")
    onnx_model.ir_version = 8
    onnx_model = Extractor(onnx_model).extract_model(["input"], names)  # drops the unused branches
    onnx_model.graph.name = "blazepose"
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(onnx_path))
    return interpreter


def check(tflite_path: Path, onnx_path: Path, keep: list[int], trials: int = 5) -> float:
    """Largest difference between TFLite (XNNPACK) and ONNX Runtime outputs on random inputs, relative to the
    output's largest magnitude."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path))
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()  # outputs in the graph's order
    wanted = [outs[k] for k in keep]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng, worst = np.random.default_rng(0), 0.0
    for _ in range(trials):
        x = rng.random(inp["shape"], dtype=np.float32)
        it.set_tensor(inp["index"], x)
        it.invoke()
        got = sess.run(None, {"input": x.transpose(0, 3, 1, 2)})
        for d, y in zip(wanted, got):
            ref = it.get_tensor(d["index"])
            worst = max(worst, float(np.abs(ref - y).max() / (np.abs(ref).max() + 1e-6)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="a mediapipe 0.10.21 wheel (any platform: the models are the same)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    tmp = args.out / "_tflite"
    tmp.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        for member, target, keep, names in MODELS:
            src = tmp / Path(member).name
            src.write_bytes(wheel.read(member))
            dst = args.out / target
            convert(src, dst, keep, names)
            worst = check(src, dst, keep)
            print(f"{member}  sha256 {hashlib.sha256(src.read_bytes()).hexdigest()}")
            print(f"  -> {dst.name}  sha256 {hashlib.sha256(dst.read_bytes()).hexdigest()}  "
                  f"{dst.stat().st_size} bytes  max |tflite - onnx| / max |tflite| {worst:.1e}")
            src.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
