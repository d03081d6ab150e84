"""How a virtual board misbehaves: the fault specs of `boards emulate --fault` and of sweep files
("[INDEX=]KIND[:VALUE]"), parsed into one `Faults` per board.

Both firmwares take the link faults (hang, unplug, reboot, garbage, dropped bytes, flipped bits,
slow replies, babble: random bytes and no answer). Boards running the vendor's model-profiler firmware take four more: a log that
never prints "done", a log cut off half-way, a layer the firmware reports "not supported", and a
debugger (Simplicity Commander) that fails on every flash write.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Faults:
    """Probabilities are per reply (protocol) or per printed log (vendor); counts are of PROFILEs
    (protocol) or of boots that print a log (vendor)."""
    hang: int | None = None         # stops answering for good at PROFILE (or log) number `hang` (0 = first)
    unplug: int | None = None       # the pty closes at PROFILE (or log) number `unplug`
    reboot: float = 0.0             # probability that a PROFILE (or log) is cut short by a reboot
    garbage: float = 0.0            # probability of a burst of random bytes before a reply (in a log)
    drop: float = 0.0               # probability that a reply (a log) loses one byte
    crc: float = 0.0                # probability that a reply (a log) has one bit flipped
    slow_s: float = 0.0             # delay before every reply (before the log)
    babble: bool = False            # streams random bytes and never answers (a crashed firmware, a wrong baud rate)
    # vendor firmware only
    nodone: bool = False            # the log never prints "done"
    truncate: int | None = None     # from log number `truncate` on, the log stops half-way (then silence)
    unsupported: int | None = None  # the firmware reports layer `unsupported` "not supported" (runs it on the CPU)
    flashfail: bool = False         # Simplicity Commander fails on every flash write to this board

    DEFAULTS = {"hang": 0, "unplug": 0, "reboot": 0.5, "garbage": 0.3, "drop": 0.1, "crc": 0.1,
                "slow": 0.2, "babble": 1, "nodone": 1, "truncate": 0, "unsupported": 0, "flashfail": 1}
    VENDOR_ONLY = ("nodone", "truncate", "unsupported", "flashfail")

    @classmethod
    def parse(cls, specs: list[str]) -> "Faults":
        """From CLI specs "KIND[:VALUE]", e.g. ["hang"], ["garbage:0.5", "slow:0.1"]."""
        f = cls()
        for spec in specs:
            kind, _, value = spec.partition(":")
            if kind not in cls.DEFAULTS:
                raise ValueError(f"unknown fault {kind!r}: choose from {', '.join(cls.DEFAULTS)}")
            try:
                v = float(value) if value else cls.DEFAULTS[kind]
            except ValueError:
                raise ValueError(f"fault {spec!r}: {value!r} is not a number") from None
            if kind in ("hang", "unplug", "unsupported", "truncate"):
                if v < 0 or v != int(v):
                    raise ValueError(f"fault {spec!r}: {value!r} is not a count from 0")
                setattr(f, kind, int(v))
            elif kind in ("nodone", "flashfail", "babble"):
                setattr(f, kind, bool(v))
            elif kind == "slow":
                f.slow_s = v
            else:
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"fault {spec!r}: probability must be in 0..1")
                setattr(f, kind, v)
        return f

    @classmethod
    def parse_per_board(cls, specs: list[str], count: int) -> list["Faults"]:
        """From specs "[INDEX=]KIND[:VALUE]" for `count` boards: with INDEX the fault applies to
        board INDEX only, without it to every board (`boards emulate --fault`, sweep files)."""
        per_board: list[list[str]] = [[] for _ in range(count)]
        for spec in specs:
            index, sep, rest = spec.partition("=")
            if sep:
                if not index.isdigit() or int(index) >= count:
                    raise ValueError(f"fault {spec!r}: board index must be 0..{count - 1}")
                per_board[int(index)].append(rest)
            else:
                for lst in per_board:
                    lst.append(spec)
        return [cls.parse(lst) for lst in per_board]

    @classmethod
    def parse_fleet(cls, specs: list[str], count: int, vendor: int = 0) -> list["Faults"]:
        """As `parse_per_board`, for `count` boards of which the last `vendor` run the vendor's
        firmware: a vendor-only fault on a protocol board is refused."""
        faults = cls.parse_per_board(specs, count)
        for i, f in enumerate(faults[:count - vendor]):
            if f.vendor_only():
                which = (f"boards {count - vendor}..{count - 1}" if vendor > 1 else f"board {count - 1}") \
                    if vendor else "none here"
                raise ValueError(f"fault {', '.join(f.vendor_only())} on board {i}: only boards with the vendor's "
                                 f"firmware take it ({which})")
        return faults

    def vendor_only(self) -> list[str]:
        """The vendor-firmware faults that are set (a protocol board cannot take them)."""
        defaults = {x.name: x.default for x in fields(self)}
        return [k for k in self.VENDOR_ONLY if getattr(self, k) != defaults[k]]

    def describe(self) -> str:
        on = [f"{x.name}={getattr(self, x.name)}" for x in fields(self)
              if getattr(self, x.name) != x.default]
        return ", ".join(on) or "none"
