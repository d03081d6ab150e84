"""How the orchestrator writes a quantity for people: latency in ms, memory in kB, changes in %.

One place, so that a log line, the ranking table and the report say `18.2 ms` and `20.5 kB` the
same way. kB are 1000 bytes, as in `mvpfarm profile`'s summary (the vendor's convention).
"""
from __future__ import annotations

import math


def missing(x) -> bool:
    """None, NaN or pandas' NA: a value a row does not have."""
    return x is None or (isinstance(x, float) and math.isnan(x)) or type(x).__name__ == "NAType"


def ms(latency_s) -> str:
    """`18.2 ms` (three significant digits); blank when there is no value."""
    if missing(latency_s):
        return ""
    v = float(latency_s) * 1e3
    return f"{v:#.3g} ms" if v < 100 else f"{v:,.0f} ms"


def kb(n_bytes) -> str:
    """`20.5 kB` (one decimal); blank when there is no value."""
    return "" if missing(n_bytes) else f"{int(n_bytes) / 1000:,.1f} kB"


def pct(change) -> str:
    """A signed change: `-12.5%`; blank when there is no value."""
    return "" if missing(change) else f"{float(change):+.1f}%"
