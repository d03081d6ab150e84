"""A sweep file's `builder = "package.module:function"`: where it comes from, found without
running anything, and imported only when the sweep runs.

A sweep file is code, like a Makefile: its builder runs with the user's rights. Checking the file
must still run nothing, so `locate` finds the module's file by walking the import path itself;
it never calls `importlib.util.find_spec` on a dotted name, which imports the parent packages
(and runs their `__init__.py`). When the sweep runs, `resolve` imports the module with the sweep
file's folder APPENDED to `sys.path`: a module beside the sweep file never shadows an installed
one (a `ray.py` next to it must not replace Ray).

Refused outright: builders from Python's standard library (`os:system`, `subprocess:run`, ...);
they are no model builders, and a sweep file naming one is a mistake or an attack.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
from pathlib import Path

_SUFFIXES = tuple(importlib.machinery.all_suffixes())


class BuilderRefError(ValueError):
    """The builder cannot be found or is not allowed; the message is one line (no file name)."""


def _roots(extra: list[str]) -> list[Path]:
    out = []
    for p in list(sys.path) + list(extra):            # the sweep's folder last, as `resolve` imports
        root = Path(p or ".")
        if root.is_dir() and root not in out:
            out.append(root)
    return out


def _find_in(dirs: list[Path], name: str) -> tuple[str, list[Path]] | None:
    """("module", [file]) or ("package", [dirs]) for `name` under `dirs`, in import order:
    the first regular package or module wins; namespace packages only if there is none."""
    namespace = []
    for d in dirs:
        pkg = d / name
        if pkg.is_dir():
            if any((pkg / f"__init__{s}").is_file() for s in _SUFFIXES):
                return "package", [pkg]
            namespace.append(pkg)
        for s in _SUFFIXES:
            if (d / f"{name}{s}").is_file():
                return "module", [d / f"{name}{s}"]
    return ("package", namespace) if namespace else None


def is_stdlib(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def locate(module: str, extra_path: list[str] = ()) -> Path | None:
    """The file (or package folder) `import module` would load, with `extra_path` appended to
    sys.path; None if there is none. Imports nothing."""
    parts = module.split(".")
    dirs = _roots(list(extra_path))
    found = None
    for i, part in enumerate(parts):
        found = _find_in(dirs, part)
        if found is None:
            return None
        kind, paths = found
        if kind == "module":
            return paths[0] if i == len(parts) - 1 else None
        dirs = paths
    return found[1][0] if found else None


def check(ref: str, folder: Path) -> Path:
    """The file that `ref`'s module resolves to; raises BuilderRefError. Imports nothing."""
    module = ref.partition(":")[0]
    if is_stdlib(module):
        raise BuilderRefError(f"{ref!r} is in Python's standard library, not a model builder: name a "
                              "function of yours that returns a keras.Model")
    path = locate(module, [str(folder)])
    if path is None:
        raise BuilderRefError(f"module {module!r} not found (searched the Python path, then {folder})")
    top = module.partition(".")[0]
    mine = [p for p in (folder / top, *(folder / f"{top}{s}" for s in _SUFFIXES)) if p.exists()]
    if mine and not str(path.resolve()).startswith(str(folder.resolve()) + "/"):
        raise BuilderRefError(f"{module!r} would be imported from {path}, not from {mine[0]} beside the sweep "
                              "file (the sweep file's folder comes last on the import path): rename your module")
    return path


def resolve(ref: str, search_path: list[str] = ()):
    """`package.module:function` -> the function, importing the module (this runs its code) with
    `search_path` appended to sys.path."""
    module_name, _, attr = ref.partition(":")
    for p in search_path:
        if p not in sys.path:
            sys.path.append(p)
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"{ref} is not callable")
    return fn


__all__ = ["BuilderRefError", "check", "is_stdlib", "locate", "resolve"]
