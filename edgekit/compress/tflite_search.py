"""The accuracy-budget search for full-int8 TFLite: the ONNX search's ladder (:mod:`.search`) on LiteRT's tools.

litert-torch's PT2E quantizer on the PyTorch model (the user's, or onnx2torch's rebuild of an ONNX file), with
GPTQ-rounded weights when the weights' rounding is what int8 loses; ai-edge-quantizer on the fp32 ``.tflite``
for the variants that keep operators in float (by type, or the most sensitive ones measured by its own
validation); quantization-aware training last. Candidates, the budget, the journal and the choice are the
ONNX search's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.compress.aeq import aeq_dynamic_int8, aeq_static_int8, tflite_sensitivity
from edgekit.compress.output_layers import tflite_output_layers
from edgekit.compress.search import (
    DEFAULT_CALIB,
    HURRY,
    MATMUL_HEAVY,
    MAX_CALIB,
    SENSITIVE_STEPS,
    Candidate,
    Gate,
    Journal,
    _late,
    _not_tried,
    _options_of,
    _run,
    _weights_first,
    score,
)
from edgekit.errors import describe

QAT_EPOCHS, QAT_LR = 10, 1e-5  # TFLite quantization-aware fine-tuning: passes over the calibration samples


def tflite_int8(model, work: Path, *, calib: np.ndarray, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray,
                gate: Gate, metadata: dict, fp32_tflite: Path | None = None, log=print,
                mirror_axis: int | None = None, deadline: float | None = None,
                speed_remedies: bool = True, journal: Path | None = None,
                weights_first: bool | None = None) -> list[Candidate]:
    """The same search for full-int8 TFLite; ``mirror_axis`` (images: the width axis) lets QAT also train on
    mirrored calibration samples. ``weights_first``: what the ONNX search of the same model measured (:data:`ORDER`):
    True starts with GPTQ-rounded weights (plain PT2E costs a whole export and would miss), False puts GPTQ after the
    activations' remedies, None measures the model's own weight floor after the plain candidate.

    Remedies in order: litert-torch's PT2E quantizer per channel (edgekit's default), then, when it misses the
    budget, the same with the layer(s) writing the outputs left in float (kept in float by the later PT2E
    candidates when that helped), with its weights rounded by GPTQ (:mod:`edgekit.export.gptq`), per tensor, and with
    min-max activation ranges (on the PyTorch ``model``; skipped when it is None); with ``speed_remedies``, the
    variants that keep the operators int8 slows down in float (ai-edge-quantizer on the fp32 .tflite, see
    :func:`tflite_speed_remedies`); then ai-edge-quantizer's static int8 of the fp32 .tflite (min-max
    calibration), with the layer(s) writing the outputs left in float, with more calibration samples, then with
    the 1, 2, 4, 8 most sensitive operators left in
    float — ranked by the signal-to-noise ratio each loses, measured by ai-edge-quantizer's own validation
    (float and int8 tensors compared on calibration inputs) — and last, the most expensive, quantization-aware
    training of ``model`` (skipped when it is None). ``deadline`` and ``journal`` as in :func:`onnx_int8`.
    """
    from edgekit.export.tflite import export_tflite

    work.mkdir(parents=True, exist_ok=True)
    small = calib[:DEFAULT_CALIB]
    tried = Journal(journal)

    inherited: dict = {}  # later PT2E candidates keep GPTQ's rounding, the output layer in float, once it helped

    def attempt(name: str, remedy: str, samples: np.ndarray, make, **options) -> Candidate:
        if make is pt2e and "qat_epochs" not in options:
            options = {**inherited, **options}
        c = Candidate(name=name, remedy=remedy, options={**options, "calibration_samples": len(samples)},
                      path=str(work / f"{name}.tflite"), excluded=list(options.get("float_ops") or []),
                      format="tflite")
        if _late(deadline):
            return _not_tried(c, tried, log)
        return _run(c, lambda: make(c.path, samples, **options), tried, x=x, y=y, reference=reference, gate=gate,
                    log=log)

    def pt2e(path, samples, **options):
        export_tflite(model, samples[:1], path, precision="int8", metadata=metadata, calib=samples,
                      int8_options=options)

    from edgekit.device.artifact import metadata_json

    text = metadata_json({**metadata, "precision": "int8"}).encode()  # embedded in every ai-edge-quantizer candidate

    def aeq(path, samples, float_ops=(), op_types=None):
        from edgekit.device.artifact import METADATA_KEY
        from edgekit.export.tflite import embed_metadata

        Path(path).write_bytes(embed_metadata(aeq_static_int8(fp32_tflite.read_bytes(), samples, float_ops=float_ops,
                                                              op_types=op_types), METADATA_KEY, text, compact=True))

    def aeq_dynamic(path, samples):
        from edgekit.device.artifact import METADATA_KEY
        from edgekit.export.tflite import embed_metadata

        Path(path).write_bytes(embed_metadata(aeq_dynamic_int8(fp32_tflite.read_bytes()), METADATA_KEY, text,
                                              compact=True))

    log(f"TFLite int8 search: {len(small)} calibration samples")
    def gptq(base: Candidate) -> None:
        c = attempt("tflite_ptq_gptq", "weights rounded by GPTQ (the same int8 grid, each layer's rounding error "
                    "moved onto the weights not yet rounded)", small, pt2e,
                    **{k: v for k, v in _options_of(base).items() if k in ("per_channel", "activation_observer")},
                    weight_rounding="gptq")
        if score(c) > score(base):
            inherited["weight_rounding"] = "gptq"

    if model is not None and weights_first:
        log("  the ONNX search found the weights' rounding most of int8's loss: GPTQ-rounded weights first")
        first = attempt("tflite_ptq_gptq", "weights rounded by GPTQ (the same int8 grid, each layer's rounding error "
                        "moved onto the weights not yet rounded; first, as the ONNX search measured the weights' "
                        "rounding to be most of what plain int8 loses)", small, pt2e, weight_rounding="gptq")
        if first.path:
            inherited["weight_rounding"] = "gptq"
        else:
            attempt("tflite_ptq_per_channel", "plain post-training int8 (litert-torch PT2E, per-channel)", small, pt2e)
    elif model is not None:
        from edgekit.compress.floors import torch_weight_floor

        default = attempt("tflite_ptq_per_channel", "plain post-training int8 (litert-torch PT2E, per-channel)",
                          small, pt2e)
        if weights_first is None:
            weights_first = not default.passed and default.path is not None and not _late(deadline) and \
                _weights_first(default, lambda: torch_weight_floor(model, x, y, reference, gate), gate, log)
            if weights_first:
                gptq(default)
    made_pt2e = [c for c in tried if c.path]
    if model is not None and made_pt2e and not any(c.passed for c in tried) and not _late(deadline):
        # The output layer in float, as the ONNX search tries it (litert-torch's quantizer leaves its annotations
        # out); every later PT2E candidate keeps it when it helped.
        base = max(made_pt2e, key=score)
        c = attempt("tflite_ptq_float_output_layer", "the layer(s) writing the outputs left in float (PT2E)", small,
                    pt2e, **{k: v for k, v in _options_of(base).items()
                             if k in ("per_channel", "activation_observer", "weight_rounding")},
                    float_output_layers=True)
        if c.path and score(c) > score(base):
            inherited["float_output_layers"] = True
            log("  the output layer stays in float in every later PT2E candidate")
    if fp32_tflite is not None and not Path(fp32_tflite).is_file():
        fp32_tflite = None  # the fp32 export failed or was not asked for: make one from the model when there is one
    if fp32_tflite is None and model is not None and not _late(deadline):
        made = work / "fp32.tflite"
        fp32_tflite = made if float_tflite(model, made, small[:1], metadata, log) else None
    pt2e_made = [c for c in tried if c.path and c.name.startswith("tflite_ptq")]

    def gptq_after() -> None:
        if model is not None and not weights_first and not any(c.passed for c in tried) and pt2e_made \
                and not any(c.name == "tflite_ptq_gptq" for c in tried):
            gptq(max(pt2e_made, key=score))  # the activations lost most; GPTQ may still close the rest

    # As in onnx_int8: when the share left holds fewer than HURRY candidates at the first one's measured cost,
    # GPTQ (a whole PT2E export plus its solve: cspresnet50 was stopped inside it, 100 s) waits for the cheaper
    # ai-edge-quantizer ladder.
    first_cost = tried[0].seconds if tried else 0.0
    hurry = deadline is not None and first_cost > 0 and deadline - time.monotonic() < HURRY * first_cost
    if hurry and model is not None and not weights_first:
        log(f"  {max(0.0, deadline - time.monotonic()):.0f} s left, {first_cost:.0f} s a candidate: "
            "ai-edge-quantizer's ladder before GPTQ")
    else:
        gptq_after()
    if fp32_tflite is not None and not _late(deadline) and fully_connected_heavy(Path(fp32_tflite)):
        attempt("tflite_dynamic", "dynamic int8 of the fully-connected layers (int8 weights per channel, each input "
                "quantized at run time from its own range): LiteRT's int8 for transformers; the rest float", small,
                aeq_dynamic)
    if fp32_tflite is not None and speed_remedies:
        tflite_speed_remedies(attempt, aeq, Path(fp32_tflite), small, passed=any(c.passed for c in tried))
    if any(c.passed for c in tried):
        return tried
    # Nothing within budget yet: the remedies that rescue accuracy most often first (see onnx_int8).
    if fp32_tflite is not None and _aeq_ladder(attempt, aeq, Path(fp32_tflite), calib, small, log):
        return tried
    if hurry:
        gptq_after()
        if any(c.passed for c in tried):
            return tried
    if model is not None:
        if attempt("tflite_ptq_minmax", "min-max activation ranges instead of histogram (keeps the tails)", small,
                   pt2e, activation_observer="minmax").passed:
            return tried
        if attempt("tflite_ptq_per_tensor", "per-tensor weight scales", small, pt2e, per_channel=False).passed:
            return tried
    if model is not None:
        mirrored = " and their mirror images" if mirror_axis is not None else ""
        attempt("tflite_qat", f"quantization-aware training: {QAT_EPOCHS} passes over the calibration samples"
                f"{mirrored} under int8 fake quantization, the original model as teacher", calib[:MAX_CALIB], pt2e,
                qat_epochs=QAT_EPOCHS, qat_lr=QAT_LR, qat_mirror_axis=mirror_axis)
    return tried


def float_tflite(model, out: Path, sample: np.ndarray, metadata: dict, log) -> bool:
    """Whether litert-torch converts ``model`` to fp32 TFLite (written to ``out``: ai-edge-quantizer's candidates
    start from it); when it cannot, the reason is logged (:func:`litert_torch_failed`) and the caller goes on
    without it. The one place the searches make their own fp32 file (the compress job's TFLite int8 target too)."""
    from edgekit.export.tflite import export_tflite

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_tflite(model, sample, out, precision="fp32", metadata=metadata)
        return True
    except Exception as exc:  # noqa: BLE001 - a converter's failure on one model
        log(litert_torch_failed(exc))
        return False


def litert_torch_failed(exc: BaseException) -> str:
    """What to say when litert-torch cannot convert the PyTorch model (seen: timm's mobilevitv2_050, whose
    linear attention's broadcasting multiply its converter passes refuse) and its ONNX file is converted instead."""
    return f"litert-torch could not convert the PyTorch model ({describe(exc)}): converted from its ONNX file instead"


def fully_connected_heavy(fp32_tflite: Path) -> bool:
    """At least :data:`MATMUL_HEAVY` fully-connected layers (attention, MLP blocks): where dynamic int8 applies."""
    from ai_edge_litert.interpreter import Interpreter

    ops = Interpreter(model_path=str(fp32_tflite))._get_ops_details()  # noqa: SLF001
    return sum(1 for o in ops if o["op_name"] == "FULLY_CONNECTED") >= MATMUL_HEAVY


# LiteRT operators whose int8 kernels are slow or leave XNNPACK's delegate (measured: h-swish nets 5.2x slower
# in full int8 than in float), and the compute operators int8 speeds up.
TFLITE_SLOW_IN_INT8 = ("HARD_SWISH", "LOGISTIC", "MUL", "MEAN", "SOFTMAX", "GELU", "TANH", "DIV", "SUB", "EXP",
                       "POW", "SQRT", "RSQRT", "SQUARED_DIFFERENCE", "SUM", "REDUCE_MAX", "BATCH_MATMUL")
TFLITE_LOSSY_IN_INT8 = ("SOFTMAX", "GELU", "POW", "SQUARED_DIFFERENCE", "RSQRT", "BATCH_MATMUL")  # attention, norms
FEW_SLOW_OPS = 0.05  # share of the model's operators below which the float variants are not tried
TFLITE_COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def tflite_speed_remedies(attempt, aeq, fp32_tflite: Path, small: np.ndarray, passed: bool = True) -> None:
    """ai-edge-quantizer int8 with the operators int8 slows down left in float: those of
    :data:`TFLITE_SLOW_IN_INT8` the model has, then everything but the compute operators.

    Not tried when none of them costs accuracy in int8 (:data:`TFLITE_LOSSY_IN_INT8`) and either no candidate
    has ``passed`` yet (speed cannot matter before one does) or they are fewer than :data:`FEW_SLOW_OPS` of the
    model's operators (one MEAN of a global pooling cannot make up for a candidate's time)."""
    import collections

    from ai_edge_litert.interpreter import Interpreter

    counts = collections.Counter(o["op_name"] for o in Interpreter(model_path=str(fp32_tflite))._get_ops_details())  # noqa: SLF001
    ops = set(counts)
    slow = sorted(ops & set(TFLITE_SLOW_IN_INT8))
    if not slow:
        return
    few = sum(counts[o] for o in slow) < FEW_SLOW_OPS * sum(counts.values())
    if (few or not passed) and not ops & set(TFLITE_LOSSY_IN_INT8):
        return
    attempt("tflite_slow_ops_float", "operators that are slower in int8 (" + ", ".join(slow) + ") left in float",
            small, aeq, op_types=sorted(ops - set(slow)))
    attempt("tflite_compute_ops_only", "only convolutions and fully-connected layers in int8 (everything else float)",
            small, aeq, op_types=sorted(ops & set(TFLITE_COMPUTE_OPS)))


def _aeq_ladder(attempt, aeq, fp32_tflite: Path, calib: np.ndarray, small: np.ndarray, log) -> bool:
    """ai-edge-quantizer's remedies on the fp32 .tflite: min-max int8, the output layer in float (kept in float
    from then on when it helped), more samples, sensitive operators left in float. True as soon as one passes."""
    minmax = attempt("tflite_aeq_minmax", "ai-edge-quantizer static int8 (min-max calibration)", small, aeq)
    if minmax.passed:
        return True
    heads: list[str] = []  # the output layer(s), kept in float by every later candidate once that helped
    try:
        found = tflite_output_layers(fp32_tflite)
    except Exception as exc:  # a remedy that cannot be located is skipped
        log(f"  TFLite output layer not located: {describe(exc)}")
        found = []
    if found:
        c = attempt("tflite_float_output_layer", "the layer(s) writing the outputs left in float: "
                    + ", ".join(found), small, aeq, float_ops=found)
        if c.passed:
            return True
        if c.path and score(c) > score(minmax):
            heads = found
            log(f"  {', '.join(found)} stay in float in every later candidate")
        elif not c.path:
            found = []  # not measured: the ranking may still pick them
    used = small
    if len(calib) > len(small):
        used = calib[:MAX_CALIB]
        if attempt("tflite_aeq_more_calibration", f"{len(used)} calibration samples instead of {len(small)}", used,
                   aeq, float_ops=heads).passed:
            return True
    try:
        ranking = tflite_sensitivity(fp32_tflite, small[:32])
    except Exception as exc:
        log(f"  TFLite layer sensitivity not measured: {describe(exc)}")
        return False
    log("  TFLite layer sensitivity (dB of SNR lost, worst first): "
        + ", ".join(f"{n[:40]} {d:.1f}" for n, d in ranking[:5]))
    ranking = [(n, d) for n, d in ranking if n not in found]  # kept in float already, or tried alone without gain
    for k in SENSITIVE_STEPS:
        if k > len(ranking):
            break
        names = [n for n, _ in ranking[:k]]
        if attempt(f"tflite_float_{k}_layers", f"the {k} most sensitive operator(s) left in float"
                   + (" besides the output layer" if heads else "") + ": "
                   + ", ".join(n if len(n) <= 40 else f"{n[:18]}…{n[-18:]}" for n in names), used, aeq,
                   float_ops=[*heads, *names]).passed:
            return True
    return False
