"""Android over adb: push the bundle, verify it there, time each TFLite file with benchmark_model, pull.

Android phones have no Python, so the golden pairs cannot be run there; the device checks the
bundle's checksums with ``sha256sum`` (toybox, Android 6+) and times every TFLite artifact with
TFLite's prebuilt ``benchmark_model`` binary, whose output files are pulled back and parsed.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.deploy.transports import AdbTransport, Step, flag_path, remote_path

WARMUP_RUNS = 10


def benchmark_argv(binary: str, graph: str, *, threads: int = 1, iterations: int = 50) -> list[str]:
    """benchmark_model's arguments for one TFLite file (CPU, XNNPACK, batch 1).

    Example:
        >>> benchmark_argv("/data/local/tmp/benchmark_model", "/data/local/tmp/m.tflite")[1]
        '--graph=/data/local/tmp/m.tflite'
    """
    return [binary, f"--graph={graph}", f"--num_threads={int(threads)}", f"--warmup_runs={WARMUP_RUNS}",
            f"--num_runs={int(iterations)}", "--use_xnnpack=true", "--report_peak_memory_footprint=true"]


def benchmark_steps(b, dev, tr: AdbTransport, bdir: str, files: list[str], *, threads: int, iterations: int,
                    benchmark_binary: Path | None, results_dir: Path) -> list[Step]:
    """Push the binary (when given), verify checksums on the device, benchmark each artifact, pull the results."""
    rt = dev.runtimes.get("litert")
    binary = (rt.binary if rt and rt.binary else f"{dev.transport.remote_dir}/benchmark_model")
    rdir = f"{bdir}.results"
    steps = []
    if benchmark_binary is not None:
        parent = binary.rsplit("/", 1)[0] or "/"
        steps += [Step("copy benchmark binary: prepare", tuple(tr.shell(f"mkdir -p {remote_path(parent)}"))),
                  Step("copy benchmark binary", tuple(tr.push(benchmark_binary, binary))),
                  Step("copy benchmark binary: make executable", tuple(tr.shell(f"chmod 755 {remote_path(binary)}")))]
    sums = " ".join(remote_path(f) for f in files)
    # sha256sum exits 1 when a file is missing: collect its output and judge it here, naming the file.
    steps.append(Step("verify checksums on the device", tuple(tr.shell(f"cd {remote_path(bdir)} && sha256sum {sums}")),
                      capture="sha256", ok_codes=(0, 1)))
    steps.append(Step("prepare results", tuple(tr.shell(f"rm -rf {remote_path(rdir)} && mkdir -p {remote_path(rdir)}"))))
    for art in b.artifacts:
        if art.format != "tflite" or "litert" not in art.runtimes:
            continue
        graph = f"{bdir}/{art.path.relative_to(b.path).as_posix()}"
        argv = benchmark_argv(binary, graph, threads=threads, iterations=iterations)
        words = [remote_path(binary), flag_path("--graph", graph), *argv[2:]]
        out = remote_path(f"{rdir}/{art.name}.txt")
        # The output goes to a file that is pulled afterwards; a failing run is reported from it, not fatal.
        steps.append(Step(f"benchmark {art.name}", tuple(tr.shell(f"{' '.join(words)} > {out} 2>&1")), ok_codes=()))
    steps.append(Step("pull results", tuple(tr.pull(rdir, results_dir))))
    return steps


_TIMINGS = re.compile(r"Inference timings in us: (.*)")
_MEMORY = re.compile(r"Peak memory footprint \(MB\): init=([\d.]+) overall=([\d.]+)")


def parse_benchmark(text: str) -> dict:
    """Numbers from benchmark_model's summary (microseconds turned into milliseconds)."""
    out: dict = {"passed": False, "init_ms": None, "first_ms": None, "warmup_mean_ms": None, "mean_ms": None,
                 "peak_memory_mb": None, "error": None}
    m = _TIMINGS.search(text)
    if m:
        fields = dict(re.findall(r"([A-Za-z ()]+?): ([\d.eE+-]+)", m.group(1)))
        fields = {k.strip(): float(v) / 1000 for k, v in fields.items()}
        out.update(init_ms=fields.get("Init"), first_ms=fields.get("First inference"),
                   warmup_mean_ms=fields.get("Warmup (avg)"), mean_ms=fields.get("Inference (avg)"))
        out["passed"] = out["mean_ms"] is not None
    mm = _MEMORY.search(text)
    if mm:
        out["peak_memory_mb"] = float(mm.group(2))
    if not out["passed"]:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        out["error"] = lines[-1] if lines else "no output"
    return out


def check_sums(b, sha_stdout: str) -> list[str]:
    """Files whose sha256 on the device differs from the manifest's (or that it did not list)."""
    from edgekit.device.bundle import MANIFEST

    found = {}
    for line in sha_stdout.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            found[parts[1].lstrip("*").removeprefix("./")] = parts[0]
    problems = []
    for rel, want in b.manifest["files"].items():
        if rel not in found:
            problems.append(f"{rel}: missing on the device")
        elif found[rel] != want["sha256"]:
            problems.append(f"{rel}: sha256 on the device differs from the manifest")
    from edgekit import rundir
    from edgekit.device.signing import SIGNATURE

    pushed = [MANIFEST] + ([SIGNATURE] if (b.path / SIGNATURE).is_file() else [])
    for rel in pushed:  # checked against this host's copies, whose signature the host verified
        if rel not in found:
            problems.append(f"{rel}: missing on the device")
        elif found[rel] != rundir.sha256(b.path / rel):
            problems.append(f"{rel}: sha256 on the device differs from the one pushed")
    return problems


def collect(b, outputs: dict, results_dir: Path) -> dict:
    """The report body of an adb deploy from the captured outputs and the pulled result files."""
    from edgekit.deploy.transports import DeployError

    problems = check_sums(b, outputs.get("sha256", {}).get("stdout", ""))
    if problems:
        raise DeployError(f"bundle refused on the device, {len(problems)} file(s) fail their checksum: "
                          + "; ".join(problems))
    rows = []
    for art in b.artifacts:
        if art.format != "tflite":
            continue
        files = list(Path(results_dir).rglob(f"{art.name}.txt"))
        text = files[0].read_text(errors="replace") if files else ""
        rows.append({"artifact": art.name, "runtime": "litert (benchmark_model)", **parse_benchmark(text)})
    passed = bool(rows) and all(r["passed"] for r in rows)
    return {"probe": {"abi": outputs.get("probe", {}).get("stdout", "").strip()},
            "checksums": f"ok on the device ({len(b.manifest['files'])} files)",
            "golden": "not checked: no Python on the device (benchmark_model times the model only)",
            "signature": {**(b.signature or {}), "checked": "on the host before the push; the device's sha256sum "
                                                            "shows the same signed files arrived"},
            "benchmark": rows, "passed": passed,
            "problems": [f"{r['artifact']}: {r['error']}" for r in rows if not r["passed"]]}
