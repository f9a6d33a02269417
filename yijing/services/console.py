"""What the desk console needs to know about this deployment."""

from __future__ import annotations

from dataclasses import dataclass

from yijing.config import settings

# Every coordinate the API takes and gives is GCJ-02 (the datum of WeChat's maps).
DATUM = "GCJ-02"


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    map_tile_url: str | None  # None: the console uses its offline base map
    datum: str


def console_config() -> ConsoleConfig:
    return ConsoleConfig(map_tile_url=settings().map_tile_url or None, datum=DATUM)
