"""A card's power limit changed for a case (`--set power_limit_w=W`), only with the user's leave
(`--allow-power-limit`), read back after it is set, and put back when the run ends, whatever ends it.

Before the first change the cards' own limits are written to a state file in the cache directory; the run
restores them on its way out (completion, an error, Ctrl-C) and removes the file. A run killed outright
(SIGKILL, a lost machine) leaves the file: `bench env` says which cards were left capped, and the next run
that can set limits puts them back before it starts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from bench.core.cache import cache_dir
from bench.telemetry.base import Backend

STATE_FILE = "power-limits-changed.json"
TOLERANCE_W = 0.5  # a read-back within this of the asked watts took effect (NVML counts in mW)


def state_path() -> Path:
    return cache_dir() / STATE_FILE


def left_changed() -> dict[str, float]:
    """The cards a run changed and did not put back (killed before it could), with their own limits (W)."""
    try:
        said = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    cards = said.get("cards") if isinstance(said, dict) else None
    return {str(k): float(v) for k, v in cards.items() if isinstance(v, int | float)} if isinstance(cards, dict) \
        else {}


class PowerCap:
    """Sets the power limit of a backend's cards for the cases that ask, and puts the originals back."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.originals: dict[str, float] = {}

    def restore_left(self) -> list[str]:
        """Put back what a killed run left changed (from the state file); what was said."""
        left = left_changed()
        if not left:
            return []
        self.originals = {**left, **self.originals}
        return [f"power limit put back on {c}: {w:g} W (a run that was killed had changed it)"
                for c, w in sorted(left.items())] + self.restore()

    def for_case(self, watts: float, cards: list[str] | None) -> str:
        """A case's cap: `watts` set and read back, or (0) the cards' own limits again where an earlier case of
        the run changed them, so a case that asks for no cap never runs under the last one; '' or why not."""
        if watts > 0:
            return self.apply(watts, cards)
        return "; ".join(self.restore()) if self.originals else ""

    def apply(self, watts: float, cards: list[str] | None) -> str:
        """Set the cards' limit to `watts` and read it back: '' when it took effect, else why not."""
        limits = self.backend.power_limits()
        targets = sorted(c for c in limits if not cards or c in cards)
        if not targets:
            return f"power_limit_w: this machine's telemetry ({self.backend.name}) cannot set a power limit"
        for card in targets:
            if card not in self.originals and limits[card][0] is not None:
                self.originals[card] = float(limits[card][0])
                self._save()
            failed = self.backend.set_power_limit(card, watts)
            if failed:
                return f"setting {card}'s power limit to {watts:g} W failed: {failed}"
        read = self.backend.power_limits()
        wrong = [f"{c} reads {read.get(c, (None, None))[0]} W" for c in targets
                 if read.get(c, (None, None))[0] is None or abs(read[c][0] - watts) > TOLERANCE_W]  # type: ignore
        return f"the power limit did not take effect: asked {watts:g} W, {', '.join(wrong)}" if wrong else ""

    def restore(self) -> list[str]:
        """Put every changed card back to its own limit and read it back; the state file goes once all are."""
        said = []
        for card, watts in sorted(self.originals.items()):
            failed = self.backend.set_power_limit(card, watts)
            now = self.backend.power_limits().get(card, (None, None))[0]
            if failed or now is None or abs(now - watts) > TOLERANCE_W:
                said.append(f"could not put {card}'s power limit back to {watts:g} W ({failed or f'it reads {now} W'})"
                            f"; set it by hand (nvidia-smi -i N -pl {watts:g})")
        if not said:
            self.originals = {}
            state_path().unlink(missing_ok=True)
        return said

    def _save(self) -> None:
        path = state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "backend": self.backend.name, "cards": self.originals}))
        os.replace(tmp, path)


def describe_left() -> list[str]:
    """For `bench env`: a line per card a killed run left capped."""
    return [f"power limit left changed on {c} by a killed run: its own limit is {w:g} W (the next bench run that "
            "can set limits puts it back)" for c, w in sorted(left_changed().items())]


def power_limit(limits: dict[str, tuple[float | None, float | None]], cards: list[str] | None) -> tuple[float, str]:
    """(the power limit in force on the case's cards, the lowest where they differ, NaN where unread; a note when
    a card's limit is not its default: the figures are a capped card's)."""
    mine = {c: v for c, v in limits.items() if not cards or c in cards}
    enforced = [e for e, _ in mine.values() if e is not None]
    capped = [f"{c} {e:g} W (default {d:g} W)" for c, (e, d) in sorted(mine.items())
              if e is not None and d is not None and abs(e - d) > 0.5]
    note = f"power limit not the default: {', '.join(capped)}" if capped else ""
    return (min(enforced) if enforced else math.nan), note
