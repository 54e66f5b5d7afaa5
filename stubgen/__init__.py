"""Stub and API-reference generation from a ToolCatalog (jinja2 templates)."""

from __future__ import annotations

import threading

from ptc.catalog import ToolCatalog
from ptc.stubgen.render import ResultCaps, build_stub, render_api_reference, render_stubs, write_modules, write_stubs


class StubCache:
    """The stub modules of a catalog, rendered again only when the catalog changes."""

    def __init__(self, catalog: ToolCatalog, result_caps: ResultCaps | None = None) -> None:
        self._catalog = catalog
        self._result_caps = result_caps  # policies are fixed per executor: the catalog's revision says it all
        self._revision = -1
        self._modules: dict[str, str] = {}
        self._lock = threading.Lock()

    def modules(self) -> dict[str, str]:
        return self.current()[1]

    def current(self) -> tuple[int, dict[str, str]]:
        """The catalog revision the modules were rendered from, and the modules (ptc.typecheck writes them)."""
        if self._revision != self._catalog.revision:
            with self._lock:
                if self._revision != self._catalog.revision:
                    revision = self._catalog.revision
                    self._modules = render_stubs(self._catalog, self._result_caps)
                    self._revision = revision
        with self._lock:
            return self._revision, self._modules

    def source(self, module: str) -> str | None:
        return self.modules().get(module)


__all__ = ["StubCache", "build_stub", "render_api_reference", "render_stubs", "write_modules", "write_stubs"]
