"""The tool catalog (filled in by the tools issue)."""

from __future__ import annotations


class ToolCatalog:
    def __init__(self, source: str = "default", version: str = "1.0") -> None:
        self.source = source
        self.version = version
