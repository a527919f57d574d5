"""Each artifact checked twice before it ships: elementwise against the model it was exported from, and by the
task metric against the original within the accuracy budget.

Split from :mod:`edgekit.compress.job` so that the gate (what counts as the same model, and when a net's own
float rounding excuses a larger difference) reads in one place.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from edgekit import rundir
from edgekit.compress import fp32_spread, samples, search, source
from edgekit.device.artifact import Artifact
from edgekit.errors import CheckFailed, first_line
from edgekit.log import get

log = get("compress").info  # printed as "[edgekit compress] ..." (edgekit.log)


def verify(artifacts: list[Artifact], ev: samples.Samples, reference: np.ndarray, own_reference: np.ndarray,
           gate: search.Gate, *, pruned: bool, rerun=None) -> list[dict]:
    """Each artifact on every installed runtime, judged twice:

    - fp32 elementwise against the model it was exported from (``own_reference``: the pruned student's outputs
      when pruning was kept, else the original's), within 1e-3 of the output range (a foreign model's logits
      can be large); one that misses it passes when it is within a few times the exported-from model's own
      spread on the samples it misses most (``rerun``: that model, inputs -> outputs; see
      :mod:`edgekit.compress.fp32_spread`), reported as such;
    - every precision against the original (``reference``) by the task metric within the budget: accuracy
      with labels, top-1 agreement without.
    """
    from edgekit.device.runtime import open_session, runtimes_for
    from edgekit.device.verify import parity

    tolerance = 1e-3 * max(1.0, float(np.abs(own_reference).max()))
    entries = []
    for art in artifacts:
        runtimes = runtimes_for(art.path)
        if not runtimes:
            raise CheckFailed(f"{art.path}: no runtime installed for {art.format}")
        per_runtime, problems, notes = {}, [], []
        for rt in runtimes:
            with open_session(art.path, runtime=rt, threads=2) as s:
                got = s.run(ev.x)
            own, orig = parity(own_reference, got, ev.y), parity(reference, got, ev.y)
            per_runtime[rt] = {**asdict(orig), "max_abs_diff_vs_exported_from": own.max_abs_diff}
            if art.precision == "fp32" and own.max_abs_diff > tolerance:
                spread = _spread(rerun, ev.x, own_reference, got)
                if spread is not None and spread.within:  # a net that amplifies float rounding, not an export error
                    per_runtime[rt]["own_fp32_spread"] = spread.model_diff
                    notes.append(spread.text(rt))
                else:
                    problems.append(f"{rt}: max abs diff {own.max_abs_diff:.2e} against the "
                                    f"{'pruned model' if pruned else 'original'} it was exported from (fp32 must "
                                    "match" + (f"; {spread.text(rt)}" if spread is not None else "") + ")")
            ok, reason = gate.check(orig.accuracy, orig.top1_agreement)
            if not ok:
                problems.append(f"{rt}: {reason}")
        first_rt = runtimes[0]
        first = per_runtime[first_rt]
        log(f"verified {art.name}: " + (f"accuracy {first['accuracy']:.4f}, " if first["accuracy"] is not None else "")
            + f"agreement with the original {first['top1_agreement']:.4f}, max abs diff "
            + f"{first['max_abs_diff_vs_exported_from']:.2e} against the {'pruned model' if pruned else 'original'}"
            + (f" -> FAILED: {'; '.join(problems)}" if problems else " -> ok")
            + (f" ({'; '.join(notes)})" if notes else ""))
        entries.append({
            "name": art.name, "role": art.role, "path": str(art.path), "format": art.format,
            "precision": art.precision, "size_bytes": art.path.stat().st_size, "sha256": rundir.sha256(art.path),
            "accuracy": first["accuracy"], "top1_agreement": first["top1_agreement"],
            "max_abs_diff": first["max_abs_diff_vs_exported_from"], "mean_abs_diff": first["mean_abs_diff"],
            "cosine": first["cosine"], "exported_from": "pruned student" if pruned else "original",
            "parity": per_runtime, "passed": not problems,
            "verdict": "; ".join(problems) or "; ".join(["within budget", *notes]),
            "latency": {},
        })
    return entries


def torch_outputs(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 64])).numpy() for i in range(0, len(x), 64)])


def _spread(rerun, x: np.ndarray, own_reference: np.ndarray, got: np.ndarray) -> fp32_spread.Spread | None:
    """The exported-from model's own fp32 spread on the samples ``got`` misses most; None when it cannot be
    measured (no model to run again, or running it one sample at a time fails): the plain tolerance then holds."""
    if rerun is None:
        return None
    try:
        return fp32_spread.measure(rerun, x, own_reference, got)
    except Exception as exc:  # noqa: BLE001 - a second look at a model that already ran; never the command's end
        log(f"the model's own fp32 spread was not measured ({type(exc).__name__}: {first_line(exc)})")
        return None


def rerun_of(model_src: source.Source):
    """The model the artifacts were exported from, as inputs -> outputs (PyTorch, or onnxruntime for an ONNX
    file), for measuring its own fp32 spread."""
    if model_src.kind == "torch" and model_src.torch_model is not None:
        return lambda x: torch_outputs(model_src.torch_model, x)
    if model_src.kind == "onnx":
        from edgekit.device.runtime import open_session

        sessions: list = []

        def run(x: np.ndarray) -> np.ndarray:
            if not sessions:
                sessions.append(open_session(model_src.onnx_path, runtime="onnxruntime", threads=2))
            return sessions[0].run(x)

        return run
    return None
