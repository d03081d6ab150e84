"""The oracle's RAM for a profile: its summary's number, or, where that number depends on the vendor simulator's heap
leftovers, the worst case of it.

The vendor's depthwise Prepare asks its optimized path's dry run before it has set the OpData's buffer pointers
(simulator/memory.py, VENDOR_HEAP_WORST_CASE), and its size search mallocs a fresh arena for every probe: a layer that
only that path can run loads on the MVP or on the CMSIS-NN path depending on what the heap held, and the reported
"Runtime Memory Size" lands anywhere between the two. For the profiles with such a layer, DATA_SET/mltk_heap_bracket.jsonl
holds the vendor's number with every malloc'd byte 0x00 (MALLOC_PERTURB_=255: the MVP path in every probe) and 0x01
(MALLOC_PERTURB_=254: the CMSIS-NN path in every probe), written by tests/corpus/heap_bracket.py. mvpfarm counts the
worst case, so that is the number it is held to; the ordinary run (mltk_sim.jsonl) must fall inside the bracket.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

BRACKET_FILE = "mltk_heap_bracket.jsonl"


@lru_cache(maxsize=None)
def heap_brackets(data_set: Path) -> dict[tuple[str, str], dict]:
    """(model, accelerator) -> {"ram_zeroed_heap": .., "ram_worst_heap": ..} for one data set directory."""
    path = Path(data_set) / BRACKET_FILE
    if not path.exists():
        return {}
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["model"], r["accelerator"]): r for r in recs}


def oracle_ram_bytes(model_path: Path, accelerator: str, summary: dict) -> int:
    """The vendor's RAM that mvpfarm's `ram_bytes` is compared with (see the module docstring)."""
    bracket = heap_brackets(Path(model_path).parent).get((Path(model_path).stem, accelerator))
    return bracket["ram_worst_heap"] if bracket else summary["runtime_memory_size"]
