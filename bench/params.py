"""What a workload parameter is: its type, default, meaning and checks (shared by the loader and engines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One workload parameter: its type, default, whether it may be a list, and its meaning."""

    type: type
    default: Any
    doc: str
    matrix: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    engine: str = ""  # set for an engine's own option: which engine reads it
    reload: bool = False  # an engine option whose change needs the model loaded again
    devices: bool = False  # an engine option that multiplies the devices a case uses
