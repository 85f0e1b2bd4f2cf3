"""Imports in gram_ray point one way: each package imports only from the layers below it, peers do not
import each other, and no modules import each other in a circle.

The order is declared once, in ``LAYERS``; the docstring of ``gram_ray/__init__.py`` shows the same line.
Every import counts, function-local and ``TYPE_CHECKING`` ones included: a lazy import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gram_ray

ROOT = Path(gram_ray.__file__).parent
LAYERS = [("config",), ("data",), ("prompts",), ("judging",), ("stages", "train"), ("tinykit",), ("apply",),
          ("eval",), ("run",), ("cli",)]  # peers share a layer and import neither each other nor anything above
ORDER = " < ".join(", ".join(layer) for layer in LAYERS)


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(root: Path) -> dict[str, list[tuple[int, str]]]:
    """Module -> (line, imported module of this package) for every import statement anywhere in it."""
    known = modules(root)
    graph: dict[str, list[tuple[int, str]]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    edges.append((node.lineno, submodule if submodule in known else base))
        graph[name] = [(line, target) for line, target in edges if target.split(".")[0] == root.name]
    return graph


def package(module: str) -> str | None:
    """The top-level package (or module) of gram_ray a module belongs to; None for gram_ray itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rank(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def backward_imports(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    """Imports that point to a layer above their own, or to a peer of the same layer."""
    problems = []
    for module, edges in sorted(graph.items()):
        here = package(module)
        for line, target in edges:
            there = package(target)
            if here is None or there is None or here == there:
                continue
            if rank(there) > rank(here):
                problems.append(f"{module}:{line} imports {target}: {there} is above {here} ({ORDER})")
            elif rank(there) == rank(here):
                problems.append(f"{module}:{line} imports {target}: {here} and {there} are peers ({ORDER})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan), each sorted: every import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def import_cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Circles between packages, and between the modules of one package."""
    packages: dict[str, set[str]] = {}
    modules_: dict[str, set[str]] = {}
    for module, edges in graph.items():
        for _, target in edges:
            here, there = package(module), package(target)
            if here is not None and there is not None and here != there:
                packages.setdefault(here, set()).add(there)
            if target != module:
                modules_.setdefault(module, set()).add(target)
    return cycles(packages) + cycles(modules_)


def test_every_package_has_a_declared_layer_and_the_docstring_shows_the_order():
    declared = {name for layer in LAYERS for name in layer}
    present = {package(m) for m in modules(ROOT)} - {None}
    assert present <= declared, f"packages without a layer: {sorted(present - declared)}; add them to LAYERS"
    assert ORDER in " ".join(gram_ray.__doc__.split()), f"gram_ray/__init__.py's docstring must show: {ORDER}"


def test_no_import_points_backwards():
    assert backward_imports(imports(ROOT)) == []


def test_no_imports_go_round_in_a_circle():
    assert import_cycles(imports(ROOT)) == []


def test_the_checks_see_a_backward_import_a_peer_import_and_a_circle(tmp_path):
    """The checks themselves, on a made-up tree: a stage that reaches up into run, a stage that imports
    training (a peer), and two modules that import each other (one of them lazily, the other relatively)."""
    root = tmp_path / "gram_ray"
    files = {
        "__init__.py": "",
        "run/__init__.py": "",
        "run/manifest.py": "from gram_ray.data.files import atomic_write\n",
        "data/__init__.py": "",
        "data/files.py": "def atomic_write(): ...\n",
        "train/__init__.py": "",
        "train/loop.py": "X = 1\n",
        "stages/__init__.py": "",
        "stages/runner.py": "from gram_ray.stages import resume\n\n\ndef f():\n    from gram_ray.run import manifest\n",
        "stages/resume.py": "from . import runner\nimport gram_ray.train.loop\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = imports(root)
    assert graph["gram_ray.stages.resume"] == [(1, "gram_ray.stages.runner"), (2, "gram_ray.train.loop")]
    assert backward_imports(graph) == [
        f"gram_ray.stages.resume:2 imports gram_ray.train.loop: stages and train are peers ({ORDER})",
        f"gram_ray.stages.runner:5 imports gram_ray.run.manifest: run is above stages ({ORDER})",
    ]
    assert import_cycles(graph) == [["gram_ray.stages.resume", "gram_ray.stages.runner"]]
