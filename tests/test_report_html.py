"""report.html: one self-contained page per run, with every artifact and where each one's time goes.

Rendered in a real browser (Debian's chromium, headless, every host name mapped to nowhere) so that a page that
needs the network, or that a browser cannot lay out, fails here and not on a user's laptop.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

from edgekit import report_html
from edgekit.audit import delegated_ops

from .conftest import chromium

# Anything a browser would fetch from elsewhere: a scheme with a host, or a protocol-relative reference.
OUTSIDE = re.compile(r"""\b(?:https?|wss?|ftp):|(?:src|href|action)\s*=\s*["']?\s*//|url\(\s*["']?\s*//|@import""",
                     re.I)


def outside_urls(page: str) -> list[str]:
    return [m.group(0) for m in OUTSIDE.finditer(page)]


def browse(page: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file with the network unreachable (every name resolves to nothing)."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={out / 'profile'}", *extra, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------- the converter and the guard


def test_the_markdown_edgekit_writes_becomes_tables_lists_and_headings():
    md = ("# r — edgekit report\n\nRun `x`, **PASSED** a < b\n\n## Artifacts\n\n| a | b |\n| --- | --- |\n"
          "| onnx_int8 | 1.0 |\n\n- one\n  continued\n- two\n")
    page = report_html.to_html(md)
    assert "<h1>r — edgekit report</h1>" in page and "<h2>Artifacts</h2>" in page
    assert "<th>a</th>" in page and "<td>onnx_int8</td>" in page and "---" not in page
    assert "<li>one continued</li><li>two</li>" in page and "<strong>PASSED</strong> a &lt; b" in page


def test_the_plot_is_inlined_and_a_missing_one_is_said(tmp_path):
    (tmp_path / "pareto.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    assert 'src="data:image/png;base64,' in report_html.to_html("![pareto](pareto.png)", images=tmp_path)
    assert "not available" in report_html.to_html("![pareto](gone.png)", images=tmp_path)


def test_the_guard_finds_an_outside_url_wherever_it_hides():
    for bad in ('<img src="https://cdn.example/x.png">', "<script src=//cdn.example/a.js>", "url(//x/y.woff)",
                '@import "x.css"', "see http://example.com"):
        assert outside_urls(bad), bad
    assert not outside_urls(report_html.render("# t\n\n| a |\n| --- |\n| 1 |\n", {"artifacts": []}))


def test_an_operator_is_in_xnnpack_when_a_delegate_node_replaced_it():
    ops = [{"index": 0, "op_name": "CONV_2D", "inputs": [0, 1], "outputs": [2]},
           {"index": 1, "op_name": "MEAN", "inputs": [2, 3], "outputs": [4]},
           {"index": 2, "op_name": "SOFTMAX", "inputs": [4], "outputs": [5]},
           {"index": 3, "op_name": "DELEGATE", "inputs": [0, 1, 3], "outputs": [4]}]
    assert delegated_ops(ops) == {0, 1}  # SOFTMAX reads the delegate's output: it runs in LiteRT's own kernels


# ---------------------------------------------------------------- a real run, in a real browser


def test_a_run_writes_report_html_with_every_artifact_and_its_measured_operators(digits_run):
    page = (digits_run / "report.html").read_text()
    res = json.loads((digits_run / "results.json").read_text())
    assert not outside_urls(page)
    for e in res["artifacts"]:
        assert f'id="audit-{e["name"]}"' in page and f"<td>{e['name']}</td>" in page
        a = e["audit"]
        assert "error" not in a, a
        if e["format"] == "onnx":  # measured: the kernel times add up to most of the run
            assert a["timed"] and 0 < a["kernel_ms"] <= a["total_ms"] * 1.05 and a["rows"][0]["ms"] > 0
        else:
            assert a["delegated"] >= 1 and a["operators"] >= a["delegated"]
    int8 = next(e for e in res["artifacts"] if e["name"] == "onnx_int8")
    assert int8["audit"]["kinds"]["integer"]["count"] >= 1  # QLinearConv and friends are reported as integer
    assert "QLinearConv" in page


def test_report_html_renders_in_headless_chromium_without_the_network(digits_run, tmp_path):
    page = tmp_path / "report.html"
    shutil.copy(digits_run / "report.html", page)  # a copy: the browser never sees the run folder's other files
    dom = browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    res = json.loads((digits_run / "results.json").read_text())
    assert dom.stdout.count("<table") >= 2 + len(res["artifacts"])  # models, artifacts, one audit per artifact
    assert "Where the time goes" in dom.stdout and 'src="data:image/png;base64,' in dom.stdout
    shot = tmp_path / "shot.png"
    proc = browse(page, tmp_path, "--window-size=1280,2000", f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert png_size(shot) == (1280, 2000) and shot.stat().st_size > 60_000  # a laid-out page, not a blank one
