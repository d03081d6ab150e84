"""The versions of the tools behind a number: what every run and measurement row records
(`tool_versions`), and TensorFlow's, which is also part of the build cache's key. Read from the
installed packages' metadata: importing TensorFlow to ask it costs seconds.
"""
from __future__ import annotations

import functools
import sys
from importlib import metadata

_DISTS = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "mvpfarm": ("mvpfarm",), "ray": ("ray",),
          "numpy": ("numpy",)}


@functools.lru_cache(maxsize=None)        # a build cache key asks once per variant
def dist_version(*dists: str) -> str:
    """The version of the first of `dists` that is installed, else "unknown"."""
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def tensorflow_version() -> str:
    return dist_version(*_DISTS["tensorflow"])


def tool_versions() -> dict:
    return {"python": sys.version.split()[0], **{k: dist_version(*d) for k, d in _DISTS.items()}}
