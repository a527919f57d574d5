"""The ``edgekit`` command: each subcommand parses its arguments and calls one API function.

Printing and exit codes live here only: 0 ok, 1 a measured check failed, 2 bad input. Errors
that edgekit raises print as one line without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgekit import __version__
from edgekit.errors import CheckFailed, EdgekitError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_run(args) -> int:
    from edgekit import pipeline, recipe, report

    r = recipe.load(args.recipe, args.set)
    try:
        run_dir = pipeline.run(r, out=args.out, resume=args.resume)
    except CheckFailed as exc:
        if exc.run_dir:
            print(report.table(report.load(exc.run_dir)))
        raise
    print(report.table(report.load(run_dir)))
    print(f"\nrun folder: {run_dir}")
    return 0


def cmd_train(args) -> int:
    from edgekit import recipe
    from edgekit.pipeline import train_only

    r = recipe.load(args.recipe, args.set)
    run_dir = train_only(r, out=args.out, resume=args.resume)
    print(f"run folder: {run_dir}")
    return 0


def cmd_bench(args) -> int:
    from edgekit.bench import bench
    from edgekit.runtime import runtimes_for

    rows = []
    for path in args.artifacts:
        runtimes = args.runtime or runtimes_for(path)
        if not runtimes:
            raise EdgekitError(f"{path}: no installed runtime runs this format (pip install \"edgekit[onnx]\" "
                               f"or \"edgekit[tflite]\")")
        for rt in runtimes:
            for t in args.threads:
                rows.append(bench(path, runtime=rt, threads=t, warmup=args.warmup, iterations=args.iterations))
    if args.json:
        from dataclasses import asdict

        for row in rows:
            print(json.dumps(asdict(row)))
        return 0
    print(f"{'artifact':40} {'runtime':14} {'threads':>7} {'size KB':>9} {'p50 ms':>9} {'p90 ms':>9}")
    for row in rows:
        print(f"{Path(row.artifact).name:40} {row.runtime:14} {row.threads:>7} {row.size_bytes / 1024:>9.1f} "
              f"{row.p50_ms:>9.3f} {row.p90_ms:>9.3f}")
    return 0


def cmd_verify(args) -> int:
    from edgekit.verify import verify_artifacts

    reports = verify_artifacts(args.artifacts, reference=args.reference, data=args.data, recipe=args.recipe,
                               budget=args.budget, limit=args.limit)
    bad = 0
    for name, rep, verdict in reports:
        acc = f"{rep.accuracy:.4f}" if rep.accuracy is not None else "n/a"
        print(f"{name}: accuracy {acc}, top-1 agreement {rep.top1_agreement:.4f}, max abs diff "
              f"{rep.max_abs_diff:.2e} over {rep.samples} samples -> {verdict}")
        bad += verdict != "ok"
    return 1 if bad else 0


def cmd_report(args) -> int:
    from edgekit import report

    res = report.load(args.run)
    print(report.markdown(res) if args.markdown else report.table(res))
    return 0 if res["passed"] else 1


def cmd_info(args) -> int:
    from edgekit import info

    print(f"edgekit {__version__}")
    for k, v in info.machine().items():
        print(f"  {k}: {v}")
    for name, v in info.versions().items():
        print(f"  {name:24} {v or 'not installed'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgekit",
        description="Train, compress, export, verify and benchmark neural networks for small devices.",
        epilog="Exit codes: 0 ok, 1 a measured check failed (e.g. accuracy budget), 2 bad input. "
               "Start with: edgekit run recipes/fashion_mnist_resnet8.yaml",
    )
    p.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def recipe_args(sp):
        sp.add_argument("recipe", help="recipe YAML file, e.g. recipes/fashion_mnist_resnet8.yaml")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set train.epochs=2 (repeatable; values parsed as YAML)")
        sp.add_argument("--out", default="runs", help="root folder of run folders (default: runs)")
        sp.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder instead of starting anew")

    sp = sub.add_parser("run", help="the whole pipeline: train, prune, distill, export, verify, bench, report",
                        description="Run every stage of a recipe and print the report table and the run folder. "
                                    "Exits 1 when an artifact misses the accuracy budget (the report is kept).")
    recipe_args(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("train", help="train the recipe's full model only (checkpoint each epoch, resumable)")
    recipe_args(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("bench", help="latency and size of artifacts on every installed runtime (no torch needed)",
                        description="Batch-1 latency after a warm-up: median and p90 over --iterations runs.")
    sp.add_argument("artifacts", nargs="+", help=".onnx or .tflite files")
    sp.add_argument("--runtime", type=_csv, help="comma-separated: onnxruntime, litert, tflite-runtime "
                                                 "(default: every installed one for the format)")
    sp.add_argument("--threads", type=_ints, default=[1], help="comma-separated thread counts (default: 1)")
    sp.add_argument("--warmup", type=int, default=20, help="untimed runs first (default: 20)")
    sp.add_argument("--iterations", type=int, default=200, help="timed runs (default: 200)")
    sp.add_argument("--json", action="store_true", help="one JSON line per measurement")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("verify", help="compare artifacts with a reference artifact on labelled data",
                        description="Accuracy, top-1 agreement and max abs diff of each artifact on held-out data: "
                                    "the test split of --recipe's data set, or an .npz with arrays x (pre-processed "
                                    "inputs) and optionally y (labels).")
    sp.add_argument("artifacts", nargs="+", help=".onnx or .tflite files")
    sp.add_argument("--reference", help="artifact whose outputs are the reference (default: none, accuracy only)")
    sp.add_argument("--recipe", help="use the held-out test split of this recipe's data set")
    sp.add_argument("--data", help=".npz file with x and optionally y")
    sp.add_argument("--budget", type=float, default=0.01,
                    help="allowed accuracy drop against the reference (default: 0.01 = 1 point)")
    sp.add_argument("--limit", type=int, help="use at most this many samples")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("report", help="print the report table of a finished run folder")
    sp.add_argument("run", help="a run folder (holding results.json)")
    sp.add_argument("--markdown", action="store_true", help="print the whole report.md")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("info", help="versions of every dependency and runtime found")
    sp.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgekitError as exc:
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgekit: interrupted; finished stages are kept, continue with --resume RUN", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
