"""The bounds a variant must meet to be feasible (`[constraints]`, or `mvpfarm rank` options).

    [constraints]
    max_ram_bytes = 131072
    max_latency_ms = 50
    max_flash_bytes = 262144
    min_accuracy = 0.90             # the worst acceptable metric value (for mse: the largest)
    max_accuracy_drop_pts = 1.0     # the default: at most 1 point of accuracy lost against the base

Each violated bound is named in the variant's `violations`, e.g. "latency 61.2 ms > max_latency_ms 50".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

DEFAULT_MAX_DROP_PTS = 1.0


@dataclass(frozen=True)
class Constraints:
    max_ram_bytes: int | None = None
    max_latency_ms: float | None = None
    max_flash_bytes: int | None = None
    min_accuracy: float | None = None
    max_accuracy_drop_pts: float = DEFAULT_MAX_DROP_PTS

    def as_dict(self) -> dict:
        return asdict(self)

    def override(self, **bounds) -> "Constraints":
        """These bounds with the given ones (those not None) replacing them."""
        return replace(self, **{k: v for k, v in bounds.items() if v is not None})

    def violations(self, row: dict, higher_is_better: bool = True, drop_pts: float | None = None) -> list[str]:
        """The bounds `row` (latency_s, ram_bytes, flash_bytes, accuracy) breaks; `drop_pts` is its
        accuracy lost against the base in points (None: not compared)."""
        out = []
        lat = row.get("latency_s")
        if self.max_latency_ms is not None and lat is not None and lat * 1e3 > self.max_latency_ms:
            out.append(f"latency {lat * 1e3:.3g} ms > max_latency_ms {self.max_latency_ms:g}")
        ram = row.get("ram_bytes")
        if self.max_ram_bytes is not None and ram is not None and ram > self.max_ram_bytes:
            out.append(f"RAM {int(ram):,} B > max_ram_bytes {self.max_ram_bytes:,}")
        flash = row.get("flash_bytes")
        if self.max_flash_bytes is not None and flash is not None and flash > self.max_flash_bytes:
            out.append(f"flash {int(flash):,} B > max_flash_bytes {self.max_flash_bytes:,}")
        acc = row.get("accuracy")
        if self.min_accuracy is not None:
            if acc is None:
                out.append(f"no accuracy to hold against min_accuracy {self.min_accuracy:g}")
            elif higher_is_better and acc < self.min_accuracy:
                out.append(f"accuracy {acc:.4g} < min_accuracy {self.min_accuracy:g}")
            elif not higher_is_better and acc > self.min_accuracy:
                out.append(f"metric {acc:.4g} > min_accuracy {self.min_accuracy:g} (lower is better)")
        if drop_pts is not None and drop_pts > self.max_accuracy_drop_pts + 1e-9:
            out.append(f"accuracy drop {drop_pts:.2f} pts > max_accuracy_drop_pts {self.max_accuracy_drop_pts:g}")
        return out

    def describe(self) -> str:
        parts = [f"{f.name} {getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name) is not None]
        return ", ".join(parts)


def parse(table, fail) -> Constraints:
    """The `[constraints]` table; `fail(key, problem)` raises the sweep file's error."""
    if table is None:
        return Constraints()
    if not isinstance(table, dict):
        fail("constraints", "must be a table")
    known = [f.name for f in fields(Constraints)]
    out = {}
    for k, v in table.items():
        if k not in known:
            fail(f"constraints.{k}", f"unknown key (known: {', '.join(known)})")
        whole = k.endswith("_bytes")
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)) or v < 0:
            fail(f"constraints.{k}", f"{v!r} is not a {'whole ' if whole else ''}number >= 0")
        out[k] = v if whole else float(v)
    return Constraints(**out)


def of_run(info: dict) -> Constraints:
    """The `[constraints]` of the sweep file a run was made from (stored with the run: a later edit
    of the file does not change an old run's ranking)."""
    import tomllib
    try:
        table = tomllib.loads(info.get("sweep_toml") or "").get("constraints")
    except tomllib.TOMLDecodeError:
        return Constraints()

    def fail(key, problem):
        from orchestrator.ranking import RankingError
        raise RankingError(f"run {info.get('run_id')}: {key}: {problem}")
    return parse(table, fail)
