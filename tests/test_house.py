"""The package's shape: no module imports one that imports it back, however lazily.

Every ``import edgekit.x`` and ``from edgekit.x import y`` counts, at the top of a module or inside a function:
a lazy import hides a circle from Python's loader, not from the reader. Registries with ``"module:attr"``
entries are how a module reaches one that must not be imported (a task's pipeline, a runtime's opener).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> the edgekit modules it imports anywhere in its source."""
    files = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = p

    def module_of(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import mod` imports the module; `from mod import name` the module the name is in
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                m = module_of(t) if t.startswith("edgekit") else None
                if m and m != name:
                    found.add(m)
        graph[name] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_lazy_imports_and_circles(tmp_path):
    pkg = tmp_path / "edgekit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from edgekit.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("import edgekit.a\n")
    g = import_graph(pkg)
    assert g["edgekit.a"] == {"edgekit.sub.b"} and g["edgekit.sub.b"] == {"edgekit.a"}
    assert circles(g) == [["edgekit.a", "edgekit.sub.b"]]


def test_no_import_circle_in_edgekit():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_readme_is_a_guide_of_at_most_300_lines_whose_links_all_resolve():
    import re

    root = PACKAGE.parent
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for doc in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.relative_to(root)}: broken link {target}"


# Modules allowed past the size limit, and why they are still one job.
LONG_ON_PURPOSE = {
    "edgekit/cli.py": "the command table: one small function per subcommand and its argparse block, nothing else",
}


def test_no_module_is_long_enough_to_hide_two_jobs():
    root = PACKAGE.parent
    long = {p.relative_to(root).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    over = {p: n for p, n in long.items() if n > 680 and p not in LONG_ON_PURPOSE}
    assert not over, f"split these by job: {over}"


# What the device folder may import from the rest of edgekit: small torch-free basics shared by both sides.
SHARED_BASICS = {"edgekit", "edgekit.errors", "edgekit.log", "edgekit.quiet", "edgekit.registry", "edgekit.rundir",
                 "edgekit.info"}
HEAVY = ("torch", "torchvision", "tensorflow", "tf_keras", "jax", "litert_torch", "onnx2torch", "torch_pruning",
         "neural_compressor", "nncf", "timm")


def test_the_device_folder_reaches_only_itself_and_the_shared_basics():
    """A file under edgekit/device/ may run on a board without torch: the path says so, the imports prove it."""
    graph = import_graph()
    on_device = lambda m: m == "edgekit.device" or m.startswith("edgekit.device.")  # noqa: E731
    device = {m for m in graph if on_device(m)}
    assert {"edgekit.device.runtime", "edgekit.device.bundle", "edgekit.device.smoke",
            "edgekit.device.demos.camera", "edgekit.device.demos.mic"} <= device
    outside = {m: sorted(t for t in graph[m] if not on_device(t) and t not in SHARED_BASICS)
               for m in device}
    assert not {m: t for m, t in outside.items() if t}, "the device side imports host modules"
    for basic in SHARED_BASICS - {"edgekit"}:
        assert graph[basic] <= SHARED_BASICS, f"{basic} is shared with the device side and must stay torch-free"


def test_no_device_module_imports_a_heavy_package_even_lazily():
    found = []
    for p in (PACKAGE / "device").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{p.relative_to(PACKAGE)}:{node.lineno} {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not found
