"""report.html: the run's report.md as one self-contained page, plus where each artifact's time goes.

The page is the markdown report (the same sections for ``edgekit run`` and ``edgekit compress``, so the two
files never disagree), converted here by a small converter for the subset edgekit writes (headings, tables,
lists, paragraphs, bold, code, the Pareto image), then the per-operator audit (edgekit.audit) with a bar per
kernel. Everything is inline: the style, the plot as a data URI, no script, no font, no outside URL, so the
file opens from a laptop, a CI artifact or an e-mail the same way and makes no request when it does.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1180px;color:#1d232b;
padding:0 16px}
h1{font-size:24px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5dbe3;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d5dbe3;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef2f6}
code{background:#eef2f6;padding:1px 4px;border-radius:3px;font-size:13px}
img{max-width:100%;border:1px solid #d5dbe3}
.bar{display:inline-block;height:10px;background:#4a7fb5;vertical-align:middle}
.integer .bar{background:#3c9d5d}.conversion .bar{background:#d08a2c}.float .bar{background:#b5504a}
.kind{font-size:12px;padding:1px 6px;border-radius:8px;color:#fff}
.kind.integer{background:#3c9d5d}.kind.float{background:#b5504a}.kind.conversion{background:#d08a2c}
.kind.mixed{background:#7a8591}.note{color:#56606b}
"""


def render(markdown: str, res: dict, run_dir: Path | None = None) -> str:
    """The HTML page of a run: its markdown report, the inline plot, and the per-operator audit."""
    body = to_html(markdown, images=run_dir)
    audit = audit_section(res)
    marker = "<h2>Versions</h2>"
    body = body.replace(marker, audit + marker, 1) if marker in body else body + audit
    title = html.escape(markdown.splitlines()[0].lstrip("# ").strip() if markdown else "edgekit report")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def audit_section(res: dict) -> str:
    """"Where the time goes": per artifact, each kernel's measured time, its kind and (LiteRT) the delegate."""
    entries = [e for e in res.get("artifacts", []) if e.get("audit")]
    if not entries:
        return ""
    cpu = res.get("environment", {}).get("machine", {})
    out = ["<h2 id=\"where-the-time-goes\">Where the time goes</h2>",
           f"<p class=\"note\">Measured in this run on {_esc(cpu.get('cpu') or cpu.get('platform', ''))}"
           f"{'; ' + _esc(res.get('cpu_int8_note')) if res.get('cpu_int8_note') else ''}. onnxruntime: each "
           "kernel of the optimised graph timed by onnxruntime's profiler (one thread, batch 1, mean of the "
           "profiled runs), charged to the float operator it implements. LiteRT: each operator's operand type "
           "and whether the XNNPACK delegate took it.</p>"]
    for e in entries:
        a = e["audit"]
        out.append(f"<h3 id=\"audit-{_esc(e['name'])}\">{_esc(e['name'])} <span class=\"note\">"
                   f"({_esc(e['format'])} {_esc(e['precision'])}, {_esc(a.get('runtime', ''))})</span></h3>")
        if "error" in a:
            out.append(f"<p class=\"note\">not measured: {_esc(a['error'])}</p>")
            continue
        out.append(f"<p>{_esc(audit_summary(a))}</p>")
        out.append(_audit_table(a))
    return "\n".join(out) + "\n"


def audit_summary(a: dict) -> str:
    """One sentence per artifact: time (or operators) by kind, the delegate's share, the Transposes added."""
    kinds = a.get("kinds", {})
    parts = []
    for kind in ("integer", "float", "conversion"):
        k = kinds.get(kind)
        if not k:
            continue
        label = {"integer": "integer kernels", "float": "float kernels", "conversion": "Quantize/Dequantize"}[kind]
        parts.append(f"{label}: {k['count']}" + (f" ({k['ms']:.3f} ms)" if k.get("ms") is not None else ""))
    s = "; ".join(parts)
    if a.get("timed"):
        s = f"{a['kernel_ms']:.3f} ms in kernels of {a['total_ms']:.3f} ms per run — " + s
    else:
        s = (f"{a.get('operators', 0)} operators, {a.get('delegated', 0)} taken by {a.get('delegate', 'the delegate')}"
             f" — {s}; per-operator time not measured ({a.get('why_untimed', '')})")
    if a.get("transposes_added") is not None:
        s += f"; Transposes added by layout conversion: {a['transposes_added']}"
    return s


def _audit_table(a: dict) -> str:
    rows = a.get("rows", [])
    timed = a.get("timed")
    head = ["kernel", "operator", "kind", "count"] + (["ms per run", "share"] if timed else ["in XNNPACK"])
    lines = ["<table class=\"audit\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    total = sum(r["ms"] for r in rows) if timed else 0
    for r in rows:
        cells = [f"<code>{_esc(r['kernel'])}</code>", _esc(r["op"]),
                 f"<span class=\"kind {_esc(r['kind'])}\">{_esc(r['kind'])}</span>", str(r["count"])]
        if timed:
            share = r["ms"] / total if total else 0.0
            cells += [f"{r['ms']:.4f}", f"<span class=\"bar\" style=\"width:{share * 240:.0f}px\"></span> "
                                        f"{share * 100:.1f} %"]
        else:
            cells.append(f"{r.get('delegated', 0)} of {r['count']}")
        lines.append(f"<tr class=\"{_esc(r['kind'])}\">" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"), (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>")]
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _inline(text: str, images: Path | None) -> str:
    def image(m):
        src = (images / m.group(2)) if images is not None else None
        if src is None or not src.is_file() or src.suffix.lower() != ".png":
            return f"<em>({_esc(m.group(1))}: not available)</em>"
        data = base64.b64encode(src.read_bytes()).decode()
        return f"<img alt=\"{_esc(m.group(1))}\" src=\"data:image/png;base64,{data}\">"

    parts = _IMAGE.split(text)
    out = []
    # split() gives text, alt, src, text, alt, src, ...
    for i in range(0, len(parts), 3):
        t = _esc(parts[i])
        for pat, rep in _INLINE:
            t = pat.sub(rep, t)
        out.append(t)
        if i + 2 < len(parts):
            out.append(image(re.match(_IMAGE, f"![{parts[i + 1]}]({parts[i + 2]})")))
    return "".join(out)


def to_html(markdown: str, images: Path | None = None) -> str:
    """The markdown edgekit writes as HTML: ``#`` headings, ``|`` tables, ``-`` lists, paragraphs."""
    out, para, lst, rows = [], [], [], []

    def flush():
        if para:
            out.append("<p>" + " ".join(_inline(p, images) for p in para) + "</p>")
            para.clear()
        if lst:
            out.append("<ul>" + "".join(f"<li>{_inline(i, images)}</li>" for i in lst) + "</ul>")
            lst.clear()
        if rows:
            body = [r for r in rows if not re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*", r)]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in body]
            head, *rest = cells
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c, images)}</th>" for c in head)
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c, images)}</td>" for c in r) + "</tr>" for r in rest)
                       + "</tbody></table>")
            rows.clear()

    for line in markdown.splitlines():
        s = line.rstrip()
        heading = re.match(r"(#{1,4}) (.*)", s)
        if heading:
            flush()
            n = len(heading.group(1))
            out.append(f"<h{n}>{_inline(heading.group(2), images)}</h{n}>")
        elif s.lstrip().startswith("|"):
            if para or lst:
                flush()
            rows.append(s.strip())
        elif re.match(r"\s*[-*] ", s):
            if para or rows:
                flush()
            lst.append(re.sub(r"^\s*[-*] ", "", s))
        elif not s.strip():
            flush()
        elif lst and line.startswith("  "):
            lst[-1] += " " + s.strip()
        else:
            if rows:
                flush()
            para.append(s.strip())
    flush()
    return "\n".join(out)
