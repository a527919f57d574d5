"""The accuracy-budget search for int8: try the known remedies in order of cost, keep the fastest that passes.

Plain post-training int8 (edgekit's default: QDQ, per-channel weights, U8S8, min-max calibration) is tried
first. When it misses the budget and the fp32 model with only its weights rounded loses most of what it loses
(the weight floor), its weights are rounded by GPTQ next, on the same int8 grid (each layer's values chosen
against its calibration inputs, :mod:`edgekit.export.gptq`); when that beats nearest rounding, every later
candidate keeps it. The layer(s) writing the outputs left in float come next (one layer, no speed lost, often
the most sensitive: :mod:`edgekit.compress.output_layers`); when that helps, every later candidate keeps them in
float. Then the variants that keep the operators int8 slows down in float (faster, and where the
activations lose most -- transformers -- more accurate too), GPTQ if not yet tried and nothing passed, then the
calibration variants of the best candidate so far (full 8-bit weights where the CPU has int8 dot products,
min-max ranges averaged over the samples, percentile calibration, S8S8). The operators-in-float variants are
tried only where onnxruntime's profile says they can pay (:data:`SPEED_REMEDY_GAIN`) or the model has operators
whose int8 costs accuracy (:data:`LOSSY_IN_INT8`). When the share left holds fewer than :data:`HURRY` candidates
at the measured cost of the first, the most sensitive layers in float come before GPTQ (when the activations
lose most) and before the calibration variants. When none is within the budget, the remedies escalate:

1. more calibration samples (all the calibration data given, up to ``MAX_CALIB``),
2. the most sensitive layers left in float: each layer's sensitivity is *measured* — the drop in
   signal-to-quantization-noise ratio (dB) from its inputs to its output when the whole model is quantized
   (onnxruntime's ``qdq_loss_debug`` matches float and QDQ activations) — and the 1, 2, 4, 8 worst are kept
   in float, one attempt each,
3. quantization-aware training: TFLite int8 fine-tunes the PyTorch model (the user's, or onnx2torch's
   rebuild of an ONNX file) under fake quantization with the original as its teacher, on the calibration
   samples, so it needs no labels (``edgekit.export.tflite._quantization_aware_training``).

Every candidate is measured: accuracy (or top-1 agreement with the original when there are no labels) on
the evaluation data, and latency side by side with fp32. Among the candidates within the budget the fastest
wins; the report lists every candidate with its numbers and why the winner won. When none passes, nothing
ships: the best attempt is kept under ``rejected/`` for inspection and the run fails its budget gate.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekit.compress.onnx_sensitivity import sensitivity
from edgekit.device.verify import parity
from edgekit.errors import DataError, describe

DEFAULT_CALIB = 256  # samples the first attempts calibrate on
MAX_CALIB = 2048  # "more calibration samples" uses up to this many
SENSITIVE_STEPS = (1, 2, 4, 8)  # layers kept in float, one attempt each
HURRY = 8  # fewer candidates than this left in the share (at the default's cost): layers in float come first
MOVING_AVERAGE = {"CalibMovingAverage": True}  # onnxruntime's averaged min-max (constant 0.01 per sample)
JOURNAL = "journal.jsonl"  # in a search's work folder: its candidates, one line each as measured
ORDER = "order.json"  # in the ONNX search's work folder: whether the weights' rounding was most of the loss


@dataclass
class Candidate:
    """One int8 attempt and what it measured."""

    name: str
    remedy: str
    options: dict
    path: str | None = None
    accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    passed: bool = False
    reason: str = ""
    seconds: float = 0.0
    p50_ms: float | None = None
    speed_vs_fp32: float | None = None
    excluded: list[str] = field(default_factory=list)
    format: str = "onnx"

    def as_dict(self) -> dict:
        return asdict(self)


class Journal(list):
    """The candidates tried, in order; each is also appended to ``path`` as one JSON line the moment it is
    recorded, so a search its parent stops at the time limit (by killing its process) still hands over every
    candidate it measured (:func:`read_journal`). ``path`` None: a plain list."""

    def __init__(self, path: Path | None = None):
        super().__init__()
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def append(self, c: Candidate) -> None:
        super().append(c)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(c.as_dict()) + "\n")
                f.flush()
                os.fsync(f.fileno())


def read_journal(path: Path) -> list[dict]:
    """What a stopped search recorded (:class:`Journal`): every complete line; a line torn by the kill, and the
    candidates whose file is gone, are left out."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            c = json.loads(line)
        except ValueError:
            continue
        if isinstance(c, dict) and (c.get("path") is None or Path(c["path"]).is_file()):
            found.append(c)
    return found


@dataclass
class Gate:
    """The budget: accuracy drop against the original when labels exist, else 1 - top-1 agreement."""

    budget: float
    baseline_accuracy: float | None

    def check(self, accuracy: float | None, agreement: float) -> tuple[bool, str]:
        if accuracy is not None and self.baseline_accuracy is not None:
            drop = self.baseline_accuracy - accuracy
            ok = drop <= self.budget + 1e-12
            return ok, (f"accuracy {accuracy:.4f}, {drop * 100:+.2f} points from the original's "
                        f"{self.baseline_accuracy:.4f} (budget {self.budget * 100:.2f})")
        loss = 1.0 - agreement
        ok = loss <= self.budget + 1e-12
        return ok, (f"top-1 agreement with the original {agreement:.4f} (budget: at least "
                    f"{1 - self.budget:.4f}; no labels, so agreement is the metric)")


def evaluate(candidate: Candidate, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray, gate: Gate) -> None:
    """Run the candidate on the evaluation inputs (onnxruntime, 2 threads) and apply the gate."""
    from edgekit.device.runtime import open_session

    out = open_session(candidate.path, threads=2).run(x)
    rep = parity(reference, out, y)
    candidate.accuracy, candidate.top1_agreement, candidate.max_abs_diff = rep.accuracy, rep.top1_agreement, rep.max_abs_diff
    candidate.passed, candidate.reason = gate.check(rep.accuracy, rep.top1_agreement)


def onnx_int8(fp32_path: Path, work: Path, *, calib: np.ndarray, x: np.ndarray, y: np.ndarray | None,
              reference: np.ndarray, gate: Gate, metadata: dict, log=print, qat=None, deadline: float | None = None,
              speed_remedies: bool = True, journal: Path | None = None) -> list[Candidate]:
    """Search int8 ONNX candidates of ``fp32_path``; returns every candidate tried, in the order tried.

    Args:
        fp32_path: the float ONNX model (never modified).
        work: a folder for candidate files.
        calib: pre-processed calibration inputs (never the evaluation data).
        x, y: evaluation inputs and labels (None: agreement is the metric).
        reference: the original model's outputs on ``x``.
        gate: the budget.
        metadata: embedded in every candidate.
        qat: a callable returning the path of a QAT-trained float ONNX model, or None when QAT does not apply.
        deadline: ``time.monotonic()`` seconds after which no further candidate is started (each one left out
            is listed as not tried).
        speed_remedies: also try the variants that trade int8 coverage for speed (:func:`onnx_speed_remedies`).
        journal: a file each candidate is written to as soon as it is measured (:class:`Journal`).
    """

    work.mkdir(parents=True, exist_ok=True)
    small = calib[:DEFAULT_CALIB]
    tried = Journal(journal)

    inherited: dict = {}  # what every later candidate keeps: GPTQ's rounding, the output layer in float, once it helped

    def attempt(name: str, remedy: str, samples: np.ndarray, source: Path = fp32_path, **options) -> Candidate:
        kept = [*inherited.get("nodes_to_exclude", ()), *(options.get("nodes_to_exclude") or ())]
        options = {**inherited, **options, **({"nodes_to_exclude": list(dict.fromkeys(kept))} if kept else {})}
        c = Candidate(name=name, remedy=remedy, options={**options, "calibration_samples": len(samples)},
                      path=str(work / f"{name}.onnx"), excluded=list(options.get("nodes_to_exclude") or []))
        if _late(deadline):
            return _not_tried(c, tried, log)
        return _run(c, lambda: quantize_loadable(source, c, samples, metadata,
                                                 {**options, "calibration_cache": work / "calibration"}), tried, x=x, y=y,
                    reference=reference, gate=gate, log=log)

    log(f"int8 search: {len(small)} calibration samples, {len(x)} evaluation samples")
    default = attempt("ptq_minmax_per_channel", "plain post-training int8 (edgekit's default)", small)

    def gptq(base: Candidate) -> None:
        """The same int8 grid, values chosen against each layer's inputs (levels computed once, reused); the
        layers ``base`` left in float stay float."""
        keep = {"nodes_to_exclude": base.excluded} if base.excluded else {}
        c = attempt("ptq_gptq", "weights rounded by GPTQ: the same int8 grid, each layer's rounding error moved onto "
                    "the weights not yet rounded so that its outputs on the calibration inputs change least"
                    + (f", {len(base.excluded)} layer(s) left in float as in {base.name}" if keep else ""), small,
                    **{**_options_of(base), **keep, "weight_rounding": "gptq"})
        if score(c) > score(base):
            inherited["weight_rounding"] = "gptq"

    from edgekit.compress.floors import weight_floor

    weights_first = not default.passed and default.path is not None and not _late(deadline) and _weights_first(
        default, lambda: weight_floor(fp32_path, x, y, reference, gate, work), gate, log)
    if not default.passed and default.path is not None:
        # The TFLite search of the same model reads it: the same weights, the same per-channel grid.
        from edgekit.rundir import write_json

        write_json(work / ORDER, {"weights_first": weights_first})
    if weights_first:
        gptq(default)
    output_tried: list[str] = []  # the output layer(s) already tried in float, kept or not
    if default.path is not None and not any(c.passed for c in tried) and not _late(deadline):
        output_tried = output_layer_in_float(attempt, fp32_path, work, small, tried, inherited, log)
    # The operators in float right away where they may also be the accuracy remedy (vision transformers: -40
    # points with LayerNorm, Softmax and GELU in int8) or where plain int8 passed and only speed is left to win;
    # otherwise after a candidate passes (cspresnet50: three of them spent 49 s of a 145 s share at -11.6 points).
    speed_first = speed_remedies and (default.passed or bool(_op_types(fp32_path) & set(LOSSY_IN_INT8)))
    if speed_first:
        onnx_speed_remedies(attempt, fp32_path, small, tried, log)
    dot = _has_int8_dot_products()
    if matmul_heavy(fp32_path) and not _late(deadline):
        # Attention and MLP blocks: each activation quantized from its own range at run time loses far less than
        # one static range for every input, and needs no calibration pass (seconds to make). Tried even when
        # static int8 passed: it is often the faster one (mobilevit_xxs: static int8 passed at 2.4x fp32's time).
        dynamic = attempt("ptq_dynamic", "dynamic int8 of the MatMuls with constant weights (int8 weights per "
                          "channel, each activation quantized at run time from its own range): onnxruntime's int8 "
                          "for transformers; the other operators stay float", small, activations="dynamic",
                          per_channel=True, reduce_range=not dot, weight_rounding="nearest")
        if dynamic.path and not dynamic.passed and not _late(deadline) and _weights_out(
                lambda: weight_floor(fp32_path, x, y, reference, gate, work), log):
            # Dynamic int8 leaves the activations little to lose; when the weights' rounding alone is outside the
            # budget (random vit_tiny: -2.8 points), GPTQ's rounding is what is left to close.
            attempt("ptq_dynamic_gptq", "dynamic int8 of the MatMuls, their weights rounded by GPTQ (the weights' "
                    "rounding alone was outside the budget)", small, activations="dynamic", per_channel=True,
                    reduce_range=not dot, weight_rounding="gptq")

    def on_best(**variation) -> dict:
        """A calibration variant of the best candidate so far (its operator types, weights and bit widths)."""
        made = [c for c in tried if c.path]
        return {**(_options_of(best_static(made)) if made else {}), **variation}

    def calibration_variants() -> None:
        if dot:
            # 7-bit weights guard against vpmaddubsw's int16 saturation on AVX2; VNNI and Arm dot products add in
            # int32, so full 8-bit weights lose nothing there and keep the accuracy 7 bits cost.
            attempt("ptq_u8s8_full_range", "full 8-bit weights (this CPU's int8 dot products do not saturate)",
                    small, **on_best(reduce_range=False))
        if not any(c.passed for c in tried):
            # Global min-max takes each range from the most extreme sample; one image that drives a layer to 40x
            # its usual range (measured on efficientnet_b0: 93 against a median of 0.5) leaves every other image
            # 8 dB of signal there. Ranges averaged over the samples (TensorFlow's moving-average min-max) ignore it.
            attempt("ptq_moving_average", "min-max ranges averaged over the calibration samples (one outlier "
                    "sample no longer sets a layer's range)", small,
                    **on_best(reduce_range=not dot, extra_options=MOVING_AVERAGE))
        if any(c.passed for c in tried):
            return
        attempt("ptq_percentile", "percentile calibration (clips activation outliers)", small,
                **on_best(method="percentile"))
        attempt("ptq_s8s8_full_range", "int8 activations and full 8-bit weights (S8S8; more precise, often slower "
                "on x86 without VNNI)", small, **on_best(activation="int8", reduce_range=False))

    def float_layers() -> bool:
        """The most sensitive layers in float, 1, 2, 4, 8 of them; True when one passes."""
        best = best_static(tried)
        if _late(deadline):
            return False
        try:
            ranking = sensitivity(fp32_path, work, calib=small[:64], options=_options_of(best), log=log)
        except Exception as exc:  # without a ranking this remedy cannot be tried; say why and go on
            tried.append(Candidate(name="ptq_float_layers", remedy="the most sensitive layers left in float",
                                   options={}, reason=f"sensitivity not measured: {describe(exc)}"))
            log(f"  layer sensitivity not measured: {tried[-1].reason}")
            return False
        heads = inherited.get("nodes_to_exclude", [])
        # in float in every candidate already, or measured alone in float without gain (a repeat would be the same)
        ranking = [(n, d) for n, d in ranking if n not in heads and n not in output_tried]
        for k in SENSITIVE_STEPS:
            if k > len(ranking):
                break
            nodes = [n for n, _ in ranking[:k]]
            c = attempt(f"ptq_float_{k}_layers", f"the {k} most sensitive layer(s) left in float"
                        + (" besides the output layer" if heads else "") + ": "
                        + ", ".join(n if len(n) <= 40 else f"{n[:18]}…{n[-18:]}" for n in nodes),
                        small, nodes_to_exclude=nodes, **_options_of(best))
            if c.passed:
                return True
        return False

    def accuracy_ladder() -> None:
        """Everything after the first candidates, until one passes or the share is used up."""
        # The share left decides the order: the calibration variants keep all of int8's speed but rarely rescue a
        # model that misses by points; the layers in float most often do. When the time left holds fewer than
        # HURRY candidates at the default's measured cost (resnet50 on 2 cores: 122 s, 20 s each), they go first.
        hurry = (deadline is not None and default.seconds > 0 and not any(c.passed for c in tried)
                 and deadline - time.monotonic() < HURRY * default.seconds)
        if hurry:
            log(f"  {max(0.0, deadline - time.monotonic()):.0f} s left, {default.seconds:.0f} s a candidate: the "
                "most sensitive layers in float first" + ("" if weights_first else ", then GPTQ"))
            if float_layers():
                return
        if not weights_first and not any(c.passed for c in tried) and any(c.path for c in tried):
            gptq(best_static(tried))  # the activations lost most; GPTQ may still close the rest
        calibration_variants()
        if any(c.passed for c in tried):
            return
        # Nothing within budget: the remedies that most often rescue accuracy first (the layers that lose most in
        # float), then the calibration variants that rarely do, so a time limit cuts the least promising ones.
        if not hurry and float_layers():
            return
        # On the best static candidate's operators, as the calibration variants: from edgekit's defaults they put
        # LayerNorm and Softmax back in int8 (efficientvit_b0: 11.6 % where the best static one had 47 %).
        attempt("ptq_minmax_per_tensor", "per-tensor weight scales", small, **on_best(per_channel=False))
        attempt("ptq_entropy", "entropy (KL) calibration", small[:128], **on_best(method="entropy"))
        if any(c.passed for c in tried):
            return
        best = best_static(tried)
        if len(calib) > len(small):
            more = calib[:MAX_CALIB]
            c = attempt("ptq_more_calibration", f"{len(more)} calibration samples instead of {len(small)}", more,
                        **_options_of(best))
            if c.passed:
                return
        if qat is not None:
            t0 = time.perf_counter()
            try:
                qat_fp32 = qat()
            except Exception as exc:
                tried.append(Candidate(name="qat", remedy="quantization-aware training", options={},
                                       reason=f"failed: {describe(exc)}",
                                       seconds=time.perf_counter() - t0))
            else:
                attempt("qat", "quantization-aware training, then int8 of the fine-tuned weights", small, source=qat_fp32)

    accuracy_ladder()
    if speed_remedies and not speed_first and any(c.passed for c in tried) and not _late(deadline):
        # Faster variants of what passed, keeping the layers it left in float.
        keep = max((c for c in tried if c.passed), key=score).excluded

        def keeping(name: str, remedy: str, samples: np.ndarray, **options) -> Candidate:
            return attempt(name, remedy, samples, **options, **({"nodes_to_exclude": keep} if keep else {}))

        onnx_speed_remedies(keeping, fp32_path, small, tried, log)
    return tried


# Operators that int8 makes slower on CPU runtimes, measured here: onnxruntime runs QLinearMul/QLinearSigmoid/
# QLinearAdd-style elementwise int8 as contrib kernels slower than their float versions, and each Q/DQ pair
# around them costs more than the op itself; LiteRT's int8 HARD_SWISH/LOGISTIC/MUL/MEAN leave XNNPACK.
SLOW_IN_INT8 = ("Mul", "Sigmoid", "HardSigmoid", "HardSwish", "Softmax", "LayerNormalization", "Div", "Erf", "Gelu",
                "Tanh", "Pow", "Sqrt", "ReduceMean", "Exp", "Sub", "InstanceNormalization", "GroupNormalization")
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Operators whose int8 costs accuracy as well as time (attention, normalisation, GELU): leaving them in float is
# also the activations' accuracy remedy, so those candidates are tried whatever the profile says.
LOSSY_IN_INT8 = ("Softmax", "LayerNormalization", "Erf", "Gelu", "Pow", "InstanceNormalization", "GroupNormalization")
SPEED_REMEDY_GAIN = 0.05  # below this share of int8's time, leaving operators in float is not worth a candidate
# What onnxruntime can quantize in QDQ form besides the compute ops (its registry), minus SLOW_IN_INT8.
FAST_IN_INT8 = (*COMPUTE_OPS, "Add", "Relu", "Clip", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
                "Concat", "Resize", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Split", "Pad", "Gather",
                "Slice", "ArgMax", "Where", "DepthToSpace", "SpaceToDepth", "Expand", "Tile")


def onnx_speed_remedies(attempt, fp32_path: Path, small: np.ndarray, tried: list[Candidate], log) -> None:
    """Candidates that keep the operators int8 slows down in float, while convolutions and matmuls stay int8.

    Tried only when the model has such operators: first those the per-operator profile of the default
    candidate measures as slower than their float versions, then every operator of :data:`SLOW_IN_INT8`, then
    (as NNCF's presets do for transformers) only the compute-heavy operators in int8.

    Skipped when the profile bounds what they could gain below :data:`SPEED_REMEDY_GAIN` of the default's time
    and the model has none of the operators whose int8 also costs accuracy (:data:`LOSSY_IN_INT8`): on
    resnet50 the three cost 48 s of a 122 s share to move one ReduceMean, and the accuracy remedies that pass it
    (GPTQ, layers in float) were never reached.
    """
    import onnx

    present = {n.op_type for n in onnx.load(str(fp32_path), load_external_data=False).graph.node}
    slow_here = sorted(present & set(SLOW_IN_INT8))
    if not slow_here:
        return
    # Calibrated as the most accurate candidate so far was: leaving operators in float changes the speed, and
    # the calibration that suited this model's ranges still decides the accuracy.
    made = [c for c in tried if c.path]
    calibration = {k: v for k, v in _options_of(best_static(made)).items() if k != "op_types"} if made else {}
    base = next((c for c in tried if c.name == "ptq_minmax_per_channel" and c.path), None)
    if base is not None:
        try:
            slower, gain = slower_op_types(str(fp32_path), base.path, small[:1])
        except Exception as exc:  # the profile is a hint; without it the fixed lists below still run
            slower, gain = [], None
            log(f"  per-operator profile not measured: {describe(exc)}")
        if gain is not None and gain < SPEED_REMEDY_GAIN and not present & set(LOSSY_IN_INT8):
            log(f"  operators in float not tried: the profile puts what they could save at {gain * 100:.1f} % of "
                f"int8's time (" + (", ".join(slower) or "no operator slower in int8") + ")")
            return
        keep_float = sorted(set(slower) & present - set(COMPUTE_OPS))
        if keep_float and set(keep_float) != set(slow_here):
            attempt("ptq_profiled_float_ops", "the operators the profile measured slower in int8 than in float left "
                    "in float: " + ", ".join(keep_float), small,
                    op_types=[o for o in FAST_IN_INT8 + SLOW_IN_INT8 if o not in keep_float], **calibration)
    attempt("ptq_slow_ops_float", "elementwise operators that are slower in int8 (" + ", ".join(slow_here)
            + ") left in float", small, op_types=list(FAST_IN_INT8), **calibration)
    attempt("ptq_compute_ops_only", "only convolutions and matrix products with constant weights in int8 (products "
            "of two activations, as in attention, and everything else float)", small,
            **{**calibration, "op_types": list(COMPUTE_OPS), "float_activation_products": True})


def output_layer_in_float(attempt, fp32_path: Path, work: Path, small: np.ndarray, tried: list[Candidate],
                          inherited: dict, log) -> list[str]:
    """The layer(s) writing the model's outputs left in float (:mod:`edgekit.compress.output_layers`), calibrated
    as the best candidate so far; when that beats it, every later candidate keeps them in float too. Returns the
    layers tried ([] when none was)."""
    from edgekit.compress.output_layers import onnx_output_layers_of

    try:
        heads = onnx_output_layers_of(fp32_path, work)
    except Exception as exc:  # a remedy that cannot be located is skipped, not a failed search
        log(f"  output layer not located: {describe(exc)}")
        return []
    if not heads:
        return []
    base = best_static([c for c in tried if c.path])
    c = attempt("ptq_float_output_layer", "the layer(s) writing the outputs left in float: " + ", ".join(heads),
                small, nodes_to_exclude=heads, **_options_of(base))
    if c.path and score(c) > score(base):
        inherited["nodes_to_exclude"] = heads
        log(f"  {', '.join(heads)} stay in float in every later candidate")
    return heads if c.path else []


def _op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def slower_op_types(fp32_path: str, int8_path: str, sample: np.ndarray) -> tuple[list[str], float]:
    """Operator types whose int8 kernels take longer per inference than their float ones (onnxruntime's profiler),
    with the int8 model's Quantize/Dequantize time charged to the operators they feed; and the most leaving them
    in float could save, as a fraction of the int8 model's kernel time."""
    from edgekit.compress.profile import onnx_op_times

    f = onnx_op_times(fp32_path, sample).by_base_type()
    q = onnx_op_times(int8_path, sample).by_base_type()
    out = [op for op, t in q.items() if op in f and t > 1.05 * f[op]]
    return out, sum(q[op] - f[op] for op in out) / (sum(q.values()) or 1.0)


def _weights_first(default: Candidate, floor, gate: Gate, log) -> bool:
    """Whether the weights' rounding is most of what ``default`` loses: the fp32 model with only its weights rounded
    to nearest (``floor()``, :mod:`edgekit.compress.floors`) already outside the budget and losing at least half of
    what the default does. Then GPTQ comes next; otherwise the activations' remedies come first."""
    try:
        f = floor()
    except Exception as exc:  # a hint for the order only: without it GPTQ keeps its later place
        log(f"  weight floor not measured: {describe(exc)}")
        return False
    lost = _loss(gate, default.accuracy, default.top1_agreement)
    weights = _loss(gate, f["accuracy"], f["top1_agreement"])
    first = not f["within_budget"] and lost > 0 and weights >= 0.5 * lost
    log(f"  weights rounded to nearest alone lose {weights * 100:.2f} of the default's {lost * 100:.2f} points: "
        + ("GPTQ next" if first else "the activations' remedies first"))
    return first


def _weights_out(floor, log) -> bool:
    """Whether the fp32 model with only its weights rounded to nearest is outside the budget (False when it
    cannot be measured)."""
    try:
        return not floor()["within_budget"]
    except Exception as exc:
        log(f"  weight floor not measured: {describe(exc)}")
        return False


def _loss(gate: Gate, accuracy: float | None, agreement: float | None) -> float:
    if accuracy is not None and gate.baseline_accuracy is not None:
        return gate.baseline_accuracy - accuracy
    return 1.0 - (agreement or 0.0)


def score(c: Candidate) -> tuple[float, float]:
    """How good a candidate is: accuracy when labelled, else agreement; between equals, the smaller largest
    output error (the eval set's decisions are coarse: two candidates often tie on them). A failed attempt
    scores below every made one."""
    if c.path is None:
        return -1.0, -np.inf
    metric = c.accuracy if c.accuracy is not None else (c.top1_agreement or 0.0)
    err = c.max_abs_diff if c.max_abs_diff is not None and np.isfinite(c.max_abs_diff) else np.inf
    return metric, -err


def best_static(tried: list[Candidate]) -> Candidate:
    """The best candidate to build static variants on: the best static one when there is one. A dynamic winner
    carries no operator types or calibration (vit_tiny: dynamic lost 5.1 points, only convolutions and MatMuls in
    static int8 8.9; the layers in float built on the dynamic one's options put LayerNorm and Softmax back in int8
    and lost 40)."""
    static = [c for c in tried if c.path and c.options.get("activations") != "dynamic"]
    return max(static or tried, key=score)


def _options_of(c: Candidate) -> dict:
    """The options a variant of ``c`` starts from (the static ones: a dynamic winner's variants are static)."""
    return {k: v for k, v in c.options.items() if k not in ("calibration_samples", "nodes_to_exclude", "activations")}


MATMUL_HEAVY = 4  # MatMuls with constant weights from which dynamic int8 is tried (attention, MLP blocks)


def matmul_heavy(path: Path) -> bool:
    """Whether the model has at least :data:`MATMUL_HEAVY` MatMuls with constant weights: transformers, MLP
    mixers, the linear layers of hybrids — where onnxruntime's dynamic int8 applies (on a conv net it would
    quantize the classifier alone)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return sum(1 for n in g.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in consts) >= MATMUL_HEAVY


def quantize_loadable(source: Path, c: Candidate, samples, metadata: dict, options: dict, tries: int = 4) -> None:
    """quantize_onnx, then check onnxruntime loads the result; when it names an operator it cannot take in its
    quantized form (seen: a broadcasting Mul of a vision transformer fails shape inference), that operator type
    stays float and the candidate is made again, at most ``tries`` times. The remedy records what was left out."""
    import re

    from edgekit.device.runtime import open_session
    from edgekit.export.onnx import quantize_onnx

    options = dict(options)
    for _ in range(tries):
        made = quantize_onnx(source, c.path, samples, metadata=metadata, **options)
        try:
            open_session(c.path, runtime="onnxruntime").close()
            if made.notes:
                c.remedy += " (" + "; ".join(made.notes) + ")"
            return
        except DataError as exc:
            op = re.search(r"Op \((\w+)\)", str(exc))
            from edgekit.export.onnx import DYNAMIC_OPS

            current = options.get("op_types") or list(DYNAMIC_OPS if options.get("activations") == "dynamic"
                                                      else FAST_IN_INT8 + SLOW_IN_INT8)
            if op is None or op.group(1) not in current:
                raise
            options["op_types"] = [o for o in current if o != op.group(1)]
            c.options["op_types"] = options["op_types"]
            c.remedy += f"; {op.group(1)} left in float (onnxruntime cannot load its quantized form here)"


def _has_int8_dot_products() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "asimddp"))


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _not_tried(c: Candidate, tried: list[Candidate], log) -> Candidate:
    c.path, c.passed, c.reason = None, False, "not tried: the time limit was reached"
    log(f"  {c.name}: {c.reason}")
    tried.append(c)
    return c


def time_candidates(candidates: list[Candidate], fp32_path: str, runtime: str, x: np.ndarray, *, threads: int = 1,
                    budget_s: float = 20.0) -> None:
    """Every candidate against the fp32 model on ``runtime``, interleaved, so "the fastest within budget" is
    measured; the rounds are sized from one timed run so the whole comparison takes about ``budget_s``."""
    from edgekit.device.bench import compare
    from edgekit.device.runtime import open_session

    live = {c.name: (c.path, runtime) for c in candidates if c.path and Path(c.path).exists()}
    if not live:
        return
    with open_session(fp32_path, runtime=runtime, threads=threads) as s:
        s.run(x[:1])
        t0 = time.perf_counter()
        s.run(x[:1])
        one = max(time.perf_counter() - t0, 1e-5)
    iterations = int(max(5, min(50, budget_s / (one * (len(live) + 1) * 4))))
    res = compare({"fp32": (str(fp32_path), runtime), **live}, threads=threads, rounds=4, iterations=iterations,
                  warmup=min(20, iterations), sample=x[:1])
    for c in candidates:
        if c.name in res:
            c.p50_ms = res[c.name]["p50_ms"]
            c.speed_vs_fp32 = c.p50_ms / res["fp32"]["p50_ms"]


def _run(c: Candidate, make, tried: list[Candidate], *, x, y, reference, gate, log) -> Candidate:
    """Build candidate ``c`` with ``make()``, evaluate it against the budget and record it in ``tried``.

    A remedy that raises is recorded as failed with its reason; the search goes on (both ladders share this).
    """
    t0 = time.perf_counter()
    try:
        make()
        evaluate(c, x, y, reference, gate)
    except Exception as exc:
        c.path, c.passed, c.reason = None, False, f"failed: {describe(exc)}"
    c.seconds = time.perf_counter() - t0
    log(f"  {c.name}: {c.reason} ({'within budget' if c.passed else 'over budget'}, {c.seconds:.1f} s)")
    tried.append(c)
    return c


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The fastest candidate within the budget (the earlier, cheaper one when within 3 % of the fastest)."""
    ok = [c for c in candidates if c.passed and c.path]
    if not ok:
        return None
    timed = [c for c in ok if c.p50_ms is not None]
    if not timed:
        return ok[0]
    fastest = min(c.p50_ms for c in timed)
    return next(c for c in timed if c.p50_ms <= fastest * 1.03)


def why(winner: Candidate | None, candidates: list[Candidate], budget: float) -> str:
    """One sentence: why the winner won, or why nothing shipped."""
    if winner is None:
        best = max(candidates, key=score) if candidates else None
        if best is None or best.path is None:  # none was made: saying "the best" of failures would mislead
            first = next((c for c in candidates if c.reason.startswith("failed")), best)
            return ("no int8 candidate could be made, so int8 does not ship"
                    + (f" ({first.name}: {first.reason})" if first else ""))
        return (f"no int8 candidate was within the budget ({budget * 100:.2f} points); the best, "
                f"{best.name}, is kept under rejected/ and int8 does not ship")
    others = [c for c in candidates if c.passed and c is not winner and c.p50_ms]
    lat = f"{winner.p50_ms:.3f} ms" if winner.p50_ms else "latency not measured"
    if not others:
        return f"{winner.name} is the only candidate within the budget ({winner.reason}; {lat})"
    return (f"{winner.name} is within the budget ({winner.reason}) and the fastest of the {len(others) + 1} that "
            f"were ({lat}; the others: " + ", ".join(f"{c.name} {c.p50_ms:.3f} ms" for c in others) + ")")
