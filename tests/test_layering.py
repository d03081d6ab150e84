"""The simulator is pure: it imports neither the device agents nor the orchestrator, names none of
their folders (nor the farm's results folder), and its modules import each other without cycles.
What the packages read at run time ships inside them."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = ROOT / "simulator"
FARM = ("device_agents", "orchestrator")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SIMULATOR.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """Every module an import statement names (at any depth: function-level imports too), with
    `from a import b` naming a.b when b is a module."""
    known = _modules()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out.append((node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in known else base))
    return out


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def test_the_simulator_imports_no_farm_module():
    found = [f"{path.relative_to(ROOT)}:{line}: imports {mod}"
             for name, path in _modules().items()
             for line, mod in _imports(ast.parse(path.read_text()), _package(name, path))
             if mod.split(".")[0] in FARM]
    assert found == []


def _strings(tree: ast.AST):
    """String constants that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node


def test_the_simulator_names_no_farm_folder():
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in _strings(tree):
            if any(f in node.value for f in FARM + ("tests/", "results/")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
        for node in ast.walk(tree):     # a folder named by a constant: X = "results", Path(...) / "results"
            value = node.value if isinstance(node, ast.Assign) else node.right if isinstance(node, ast.BinOp) else None
            if isinstance(value, ast.Constant) and value.value in ("results", "tests"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value.value!r}")
    assert found == []


def _cycles() -> list[set[str]]:
    """The simulator's strongly connected import components of more than one module (Tarjan)."""
    modules = _modules()
    graph = {name: {mod for _, mod in _imports(ast.parse(path.read_text()), _package(name, path))
                    if mod in modules and mod != name}
             for name, path in modules.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_at_all():
    assert _cycles() == []


def test_silicon_data_ships_inside_the_package():
    from device_agents import silicon_model
    shipped = Path(silicon_model.DEFAULT_REPORTS)
    assert shipped.is_relative_to(ROOT / "device_agents") and shipped.is_file()
    assert shipped.read_bytes() == (ROOT / "tests" / "data" / "zoo" / "device_reports.json").read_bytes()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert str(shipped.relative_to(ROOT / "device_agents").parent / "*.json") in data["device_agents"]
    assert len(silicon_model.SiliconModel().reports) == 8
