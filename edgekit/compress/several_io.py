"""``edgekit compress`` for ONNX models with several inputs or outputs: a stateful RNN, a multi-head net.

The data is an .npz whose keys are the model's input names, each holding N samples stacked on a new leading
axis; every sample is fed exactly as stored (:func:`edgekit.compress.samples.load_feeds`), so a state whose
batch is its second axis, or an integer scalar such as a sample rate, goes in untouched. Calibration covers
every float input; non-float inputs are fed, never quantized. Every output is judged
(:mod:`edgekit.compress.outputs`): the main one by the task metric, the others (the new state) by their error.

Targets: ONNX fp32, fp16 and int8 (the search ladder of :func:`edgekit.compress.search.onnx_int8` without the
per-layer sensitivity step, every candidate judged on every output) and TFLite fp32/int8 through onnx2torch and
litert-torch, each made in a child process like the single-input targets.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from edgekit import isolate, rundir
from edgekit.compress import outputs, samples, search
from edgekit.device.artifact import Artifact, model_metadata
from edgekit.errors import CheckFailed, DataError


def reference_outputs(path: Path, feeds: samples.Feeds) -> list[np.ndarray]:
    """Every output of ``path`` (onnxruntime) for every sample, each output stacked over the samples."""
    from edgekit.device.runtime import open_session

    with open_session(path, runtime="onnxruntime", threads=2) as s:
        return run_all(s, feeds)


def run_all(session, feeds: samples.Feeds) -> list[np.ndarray]:
    per = [session.run_feeds(feeds.sample(i)) for i in range(len(feeds))]
    return [np.stack([np.asarray(p[k], np.float32) for p in per]) for k in range(len(per[0]))]


def seconds_after_searches(onnx_path: Path, ev: samples.Feeds, targets: list[str]) -> float:
    """The seconds to keep back for verifying every artifact on all of ``ev`` (one sample at a time, as
    :func:`verify` runs them), benchmarking and the report: the float model's time per sample on onnxruntime,
    timed here on a few samples, as :func:`edgekit.compress.job._seconds_after_searches` does for one input
    (a fixed reserve let a slow model's verification run the command past its limit)."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        feed = ev.sample(0)
        session.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(3):
            session.run(None, feed)
        per_sample = (time.perf_counter() - t0) / 3
    except Exception:  # noqa: BLE001 - an estimate; verification itself reports a model that cannot run
        return 0.0
    runs = sum(1.2 if t.startswith("tflite") else 1.0 for t in targets)
    return 30.0 + per_sample * len(ev) * runs


def compress_several(opts, src, *, log, started: float | None = None) -> Path:
    """The whole job for a model with several inputs or outputs (see the module docstring); ``started``: the
    command's ``time.monotonic()`` start, from which its time limit counts."""
    from edgekit.compress.clock import Clock
    from edgekit.compress.onnx_files import opset_at_least
    from edgekit.compress.recommend import recommend, recommendation_lines
    from edgekit.compress.workspace import fingerprint, open_workspace

    t_start = time.perf_counter()
    if src.kind != "onnx":
        raise DataError(f"{src.spec}: several inputs or outputs are supported for ONNX files")
    calib = samples.load_feeds(opts.calib, src.inputs, limit=opts.calib_samples)
    if opts.eval:
        ev = samples.load_feeds(opts.eval, src.inputs, limit=opts.eval_samples)
    else:
        if len(calib) < 4:
            raise DataError(f"{opts.calib}: {len(calib)} samples cannot be split into calibration and evaluation; "
                            f"give more, or --eval DATA")
        order = np.random.default_rng(0).permutation(len(calib))
        half = len(order) // 2
        ev, calib = calib.take(np.sort(order[:half])), calib.take(np.sort(order[half:]))
        ev.note = f"no --eval: a seeded half of {opts.calib} ({half} samples), never used for calibration"
    reference = reference_outputs(src.onnx_path, ev)
    main_kind = outputs.kind_of(reference[0])
    baseline = None
    if ev.y is not None and main_kind != "values":
        baseline = outputs.compare(reference, reference, ev.y, names=src.outputs).accuracy
    gate = search.Gate(opts.budget, baseline)

    ws = open_workspace(opts.out, fingerprint(opts))
    out, work = ws.out, ws.work
    log(f"{src.spec}: {len(src.inputs)} inputs ({', '.join(n for n, _, _ in src.inputs)}), {len(src.outputs)} outputs "
        f"({', '.join(src.outputs)}); {len(calib)} calibration and {len(ev)} evaluation samples; the main output "
        f"'{src.outputs[0]}' is judged as {main_kind}, the others by their relative RMS error "
        f"(at most {outputs.STATE_TOLERANCE})")
    targets = [f"{f}:{p}" for f in opts.formats for p in opts.precisions]
    clock = Clock(opts.time_limit, targets, start=started)
    data = work / "feeds.npz"
    if not data.is_file():
        arrays = {f"calib/{k}": v for k, v in calib.arrays.items()} | {f"x/{k}": v for k, v in ev.arrays.items()}
        arrays |= {f"reference/{i}": r for i, r in enumerate(reference)}
        if ev.y is not None:
            arrays["y"] = ev.y
        with rundir.atomic_path(data) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    stages: dict = {}
    fp32_onnx = opset_at_least(src.onnx_path, 13, work, stages)
    clock.after = seconds_after_searches(fp32_onnx, ev, targets)
    meta = model_metadata(labels=[str(i) for i in range(reference[0].reshape(len(reference[0]), -1).shape[1])],
                          input_shape=list(src.inputs[0][1]), preprocess={"kind": "tensor", "note": calib.note},
                          precision="fp32", source=src.spec, input_name=src.inputs[0][0])
    meta["input"]["names"] = [n for n, _, _ in src.inputs]
    meta["inputs"] = [{"name": n, "shape": d, "dtype": t} for n, d, t in src.inputs]
    meta["outputs"] = list(src.outputs)

    artifacts, candidates, skipped = [], [], []
    gate_d = {"budget": gate.budget, "baseline": gate.baseline_accuracy}
    for target in targets:
        fmt, precision = target.split(":")
        path = out / f"model_{precision}.{fmt}"
        done = ws.done(f"target_{fmt}_{precision}")
        seconds = clock.share(target)
        if done is None:
            done = ws.mark(f"target_{fmt}_{precision}",
                           _make(fmt, precision, path, fp32_onnx, meta, gate_d, opts, ws, data, seconds,
                                 clock.kill_after(seconds), stages))
        candidates += done.get("candidates", [])
        stages.update(done.get("stages", {}))
        if done.get("skipped"):
            skipped.append({"target": target, "name": f"{fmt}_{precision}", "skipped": done["skipped"]})
            log(f"{target} not exported: {done['skipped']}")
        elif done.get("path") and Path(done["path"]).is_file():
            artifacts.append(Artifact(Path(done["path"]), fmt, precision))
            log(f"wrote {path.name}: {path.stat().st_size:,} bytes")

    entries = verify(artifacts, ev, reference, gate, names=src.outputs, log=log)
    for e in entries:
        if not e["passed"] and e["precision"] != "fp32" and Path(e["path"]).parent == out:
            (out / "rejected").mkdir(exist_ok=True)
            Path(e["path"]).replace(out / "rejected" / Path(e["path"]).name)
            e["path"] = str(out / "rejected" / Path(e["path"]).name)
    bench(entries, ev.sample(0), opts.threads)
    recommended = recommend(entries)
    from edgekit import __version__, info, report
    from edgekit.compress import report as compress_report

    passed = all(e["passed"] for e in entries) and not any(
        stages.get(k, {}).get("shipped", "") is None for k in ("int8_search", "tflite_int8_search"))
    res = {
        "schema": 1, "edgekit_version": __version__, "recipe": f"compress {src.name}", "recipe_digest":
            rundir.sha256(src.onnx_path), "recipe_source": src.spec, "run_dir": str(out),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget": opts.budget, "passed": passed,
        "command": "compress", "resumed": ws.resumed, "time_limit": opts.time_limit,
        "models": {"original": {"spec": src.spec, "kind": "onnx", "input_shape": list(src.inputs[0][1]),
                                "inputs": meta["inputs"], "outputs": meta["outputs"], "accuracy": baseline}},
        "data": {"calibration": {"source": calib.source, "samples": len(calib), "note": calib.note},
                 "evaluation": {"source": ev.source, "samples": len(ev), "labelled": ev.y is not None,
                                "note": ev.note}},
        "calibration_warnings": [], "stages": stages, "artifacts": entries, "skipped": skipped,
        "int8_candidates": candidates, "recommended": recommended, "inc": None, "cpu_int8_note": "",
        "seconds": time.perf_counter() - t_start, "environment": {"machine": info.machine(),
                                                                 "versions": info.versions()},
    }
    report.write(out, res, render=compress_report.markdown)
    ws.finish()
    print(report.table(res))
    for line in recommendation_lines(recommended):
        print(line)
    if not passed:
        failed = [e["name"] for e in entries if not e["passed"]] + [
            f"{k} (nothing within budget)" for k in ("int8_search", "tflite_int8_search")
            if k in stages and stages[k].get("shipped", "") is None]
        raise CheckFailed(f"over the accuracy budget: {', '.join(failed)} (see {out / 'report.md'})", run_dir=out)
    log(f"done in {time.perf_counter() - t_start:.0f} s: {out / 'report.md'}")
    return out


def _make(fmt, precision, path, fp32_onnx, meta, gate_d, opts, ws, data, seconds, timeout, stages) -> dict:
    from edgekit.compress.onnx_files import onnx_fp16, onnx_fp32, ship, ship_stopped

    logs = ws.work / "logs" / f"{fmt}_{precision}.log"
    try:
        if fmt == "onnx" and precision == "fp32":
            return {"path": str(onnx_fp32(fp32_onnx, path, meta).path)}
        if fmt == "onnx" and precision == "fp16":
            return {"path": str(onnx_fp16(fp32_onnx, path, meta).path)}
        if fmt == "onnx":
            job = isolate.call("edgekit.compress.several_io:onnx_int8_job",
                               {"onnx": str(fp32_onnx), "data": str(data), "work": str(ws.work / "candidates"),
                                "gate": gate_d, "metadata": meta, "deadline": time.monotonic() + seconds},
                               what="ONNX int8 search", timeout=timeout, log=logs).result
            return ship(job["candidates"], path, ws.out, opts.budget, "onnx")
        job = isolate.call("edgekit.compress.several_io:tflite_job",
                           {"onnx": str(fp32_onnx), "data": str(data), "out": str(path), "precision": precision,
                            "metadata": meta, "gate": gate_d, "work": str(ws.work / "tflite_candidates")},
                           what=f"TFLite {precision} conversion", timeout=timeout, log=logs).result
        if precision == "int8":
            return ship(job["candidates"], path, ws.out, opts.budget, "tflite")
        return {"path": job["path"]}
    except isolate.JobFailed as exc:
        stopped = None
        if fmt == "onnx" and precision == "int8":
            stopped = ship_stopped(ws.work / "candidates", path, ws.out, opts.budget, "onnx",
                                   f"{exc.kind} ({exc.detail})")
        return stopped or {"skipped": f"{exc.what} {exc.kind}: {exc.detail}"}
    except DataError as exc:
        return {"skipped": str(exc)}


class FeedsData:
    """The arrays of ``feeds.npz``: calibration and evaluation feeds, labels and the original's outputs."""

    def __init__(self, path: str):
        with np.load(path) as z:
            self.calib = _feeds(z, "calib/")
            self.x = _feeds(z, "x/")
            self.y = z["y"] if "y" in z.files else None
            n = len([k for k in z.files if k.startswith("reference/")])
            self.reference = [z[f"reference/{i}"] for i in range(n)]


def _feeds(z, prefix: str) -> samples.Feeds:
    return samples.Feeds({k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}, None, prefix)


def _judge_candidate(c: search.Candidate, d: FeedsData, gate, names) -> None:
    from edgekit.device.runtime import open_session

    with open_session(c.path, threads=2) as s:
        got = run_all(s, d.x)
    rep = outputs.compare(d.reference, got, d.y, names=names)
    c.accuracy, c.top1_agreement, c.max_abs_diff = rep.accuracy, rep.top1_agreement, rep.max_abs_diff
    c.passed, c.reason = outputs.judge(rep, d.reference, precision="int8", gate=gate)


def onnx_int8_job(*, onnx: str, data: str, work: str, gate: dict, metadata: dict, deadline: float) -> dict:
    """Child job: int8 candidates of a several-input model, each judged on every output, each timed."""
    import onnx as onnx_lib

    from edgekit.compress.search import COMPUTE_OPS, FAST_IN_INT8, JOURNAL, SLOW_IN_INT8, Candidate, Gate, Journal
    from edgekit.compress.target_jobs import log
    from edgekit.errors import describe
    from edgekit.export.onnx import quantize_onnx

    d = FeedsData(data)
    g = Gate(gate["budget"], gate["baseline"])
    Path(work).mkdir(parents=True, exist_ok=True)
    names = list(metadata.get("outputs") or [])
    calib = d.calib.samples()[: search.DEFAULT_CALIB]
    present = {n.op_type for n in onnx_lib.load(onnx, load_external_data=False).graph.node}
    ladder = [("ptq_minmax_per_channel", "plain post-training int8 (edgekit's default)", {}),
              ("ptq_gptq", "weights rounded by GPTQ (the same int8 grid, values chosen against each layer's inputs)",
               {"weight_rounding": "gptq"}),
              ("ptq_minmax_per_tensor", "per-tensor weight scales", {"per_channel": False}),
              ("ptq_percentile", "percentile calibration (clips activation outliers)", {"method": "percentile"}),
              ("ptq_s8s8_full_range", "int8 activations and full 8-bit weights (S8S8)",
               {"activation": "int8", "reduce_range": False})]
    if present & set(SLOW_IN_INT8):
        ladder += [("ptq_slow_ops_float", "elementwise operators that are slower in int8 left in float",
                    {"op_types": list(FAST_IN_INT8)}),
                   ("ptq_compute_ops_only", "only convolutions and matrix products in int8",
                    {"op_types": list(COMPUTE_OPS)})]
    found = Journal(Path(work) / JOURNAL)  # what a stopped search measured still reaches the parent
    log(f"int8 search: {len(calib)} calibration samples (every float input), {len(d.x)} evaluation samples")
    for name, remedy, options in ladder:
        c = Candidate(name=name, remedy=remedy, options={**options, "calibration_samples": len(calib)},
                      path=str(Path(work) / f"{name}.onnx"))
        if time.monotonic() > deadline:
            c.path, c.reason = None, "not tried: the time limit was reached"
            found.append(c)
            continue
        t0 = time.perf_counter()
        try:
            quantize_onnx(onnx, c.path, calib, metadata=metadata, calibration_cache=Path(work) / "calibration", **options)
            _judge_candidate(c, d, g, names)
        except Exception as exc:
            c.path, c.passed, c.reason = None, False, f"failed: {describe(exc)}"
        c.seconds = time.perf_counter() - t0
        log(f"  {c.name}: {c.reason} ({'within budget' if c.passed else 'over budget'}, {c.seconds:.1f} s)")
        found.append(c)
    _time(found, onnx, d.x.sample(0))
    return {"candidates": [c.as_dict() for c in found]}


def _time(found: list, baseline: str, feed: dict) -> None:
    live = {c.name: c.path for c in found if c.path and Path(c.path).is_file()}
    if not live:
        return
    t = time_feeds({"fp32": baseline, **live}, feed)
    for c in found:
        if c.name in t:
            c.p50_ms = t[c.name]
            c.speed_vs_fp32 = t[c.name] / t["fp32"]


def time_feeds(paths: dict[str, str], feed: dict, *, threads: int = 1, rounds: int = 5, iterations: int = 40
               ) -> dict[str, float]:
    """p50 ms of one call per model, interleaved round by round (as :func:`edgekit.device.bench.compare`)."""
    from edgekit.device.runtime import open_session

    sessions = {k: open_session(p, threads=threads) for k, p in paths.items()}
    for s in sessions.values():
        for _ in range(5):
            s.run_feeds(feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(iterations):
                t0 = time.perf_counter()
                s.run_feeds(feed)
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def tflite_job(*, onnx: str, data: str, out: str, precision: str, metadata: dict, gate: dict, work: str) -> dict:
    """Child job: TFLite of a several-input ONNX model through onnx2torch and litert-torch (fp32), then
    ai-edge-quantizer's static int8 calibrated on every float input (int8)."""
    from edgekit.compress.search import Candidate, Gate
    from edgekit.device.artifact import METADATA_KEY, metadata_json
    from edgekit.export.route_onnx2torch import onnx_to_tflite_several
    from edgekit.export.tflite import embed_metadata

    d = FeedsData(data)
    Path(work).mkdir(parents=True, exist_ok=True)
    fp32 = Path(work) / "fp32_several.tflite"
    if not fp32.is_file():
        onnx_to_tflite_several(onnx, fp32, feeds=d.calib.samples()[:8], metadata={**metadata, "precision": "fp32"})
    if precision == "fp32":
        shutil.copyfile(fp32, out)
        return {"path": out}
    if precision == "fp16":
        from edgekit.export.route_onnx2tf import _fp16_weights

        data_ = embed_metadata(_fp16_weights(fp32.read_bytes(), None), METADATA_KEY,
                               metadata_json({**metadata, "precision": "fp16"}).encode(), compact=True)
        Path(out).write_bytes(data_)
        return {"path": out}
    c = Candidate(name="tflite_aeq_minmax", remedy="ai-edge-quantizer static int8 (min-max), every float input "
                  "calibrated", options={}, path=str(Path(work) / "tflite_aeq_minmax.tflite"), format="tflite")
    try:
        q = aeq_int8_feeds(fp32.read_bytes(), d.calib.samples()[: search.DEFAULT_CALIB], metadata["input"]["names"])
        Path(c.path).write_bytes(embed_metadata(q, METADATA_KEY, metadata_json({**metadata, "precision": "int8"})
                                                .encode(), compact=True))
        _judge_candidate(c, d, Gate(gate["budget"], gate["baseline"]), list(metadata.get("outputs") or []))
    except Exception as exc:
        from edgekit.errors import describe

        c.path, c.reason = None, f"failed: {describe(exc)}"
    _time([c], str(fp32), d.x.sample(0))
    return {"candidates": [c.as_dict()]}


def aeq_int8_feeds(flatbuffer: bytes, feeds: list[dict], names: list[str]) -> bytes:
    """ai-edge-quantizer static int8 of a several-input .tflite, calibrated with the feeds mapped to the file's
    inputs in order (the edgekit metadata records the ONNX names in that order)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    from edgekit.compress.aeq import _aeq, _calibration_bar_on_terminals_only

    it = Interpreter(model_content=flatbuffer)
    (key, sig), = it.get_signature_list().items()
    tfl_names = list(sig["inputs"])
    dtypes = {k: v["dtype"] for k, v in it.get_signature_runner(key).get_input_details().items()}
    q = _aeq(flatbuffer)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    mapped = [{t: np.asarray(f[n]).astype(dtypes[t]) for t, n in zip(tfl_names, names, strict=True)} for f in feeds]
    with _calibration_bar_on_terminals_only():
        result = q.calibrate({key: mapped}, num_threads=2)
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


def verify(artifacts, ev: samples.Feeds, reference: list[np.ndarray], gate, *, names, log) -> list[dict]:
    """Every artifact on every installed runtime, every output judged (:func:`edgekit.compress.outputs.judge`)."""
    from edgekit.device.runtime import open_session, runtimes_for

    entries = []
    for art in artifacts:
        per, problems = {}, []
        for rt in runtimes_for(art.path):
            try:
                with open_session(art.path, runtime=rt, threads=2) as s:
                    got = run_all(s, ev)
                rep = outputs.compare(reference, got, ev.y, names=names)
            except (DataError, ValueError) as exc:
                problems.append(f"{rt}: {exc}")
                continue
            ok, reason = outputs.judge(rep, reference, precision=art.precision, gate=gate)
            per[rt] = {"accuracy": rep.accuracy, "top1_agreement": rep.top1_agreement,
                       "max_abs_diff": rep.max_abs_diff, "outputs": [o.__dict__ for o in rep.outputs],
                       "verdict": reason}
            if not ok:
                problems.append(f"{rt}: {reason}")
        first = next(iter(per.values()), {"accuracy": None, "top1_agreement": 0.0, "max_abs_diff": float("nan")})
        log(f"verified {art.name}: " + "; ".join(f"{rt}: {v['verdict']}" for rt, v in per.items())
            + (f" -> FAILED: {'; '.join(problems)}" if problems else " -> ok"))
        entries.append({"name": art.name, "role": art.role, "path": str(art.path), "format": art.format,
                        "precision": art.precision, "size_bytes": art.path.stat().st_size,
                        "sha256": rundir.sha256(art.path), "accuracy": first["accuracy"],
                        "top1_agreement": first["top1_agreement"], "max_abs_diff": first["max_abs_diff"],
                        "parity": per, "passed": not problems and bool(per),
                        "verdict": "; ".join(problems) or "within budget", "latency": {}})
    return entries


def bench(entries: list[dict], feed: dict, threads) -> None:
    """Latency of one call per artifact, the artifacts of a format interleaved, with the ratio to fp32."""
    for fmt in sorted({e["format"] for e in entries}):
        group = [e for e in entries if e["format"] == fmt and Path(e["path"]).exists()]
        if not group:
            continue
        for t in threads:
            times = time_feeds({e["name"]: e["path"] for e in group}, feed, threads=int(t))
            rt = "onnxruntime" if fmt == "onnx" else "litert"
            for e in group:
                e["latency"].setdefault(rt, {})[str(t)] = {"p50_ms": times[e["name"]], "p90_ms": times[e["name"]]}
        fp32 = next((e for e in group if e["precision"] == "fp32"), None)
        for e in group:
            if fp32 is not None and e is not fp32:
                e["speed_vs_fp32"] = {rt: {t: v["p50_ms"] / fp32["latency"][rt][t]["p50_ms"] for t, v in d.items()}
                                      for rt, d in e["latency"].items()}
