"""In-memory importer for the pure-Python standard library.

A componentize-py guest has no file system at run time: only modules imported
while the component was built exist in its snapshot. At build time this module
compiles the standard library found on disk (the build's `/python`), keeps
each module's code object marshalled and compressed in memory, and serves
imports from that table at run time. Each module's source is kept too,
compressed (`get_source`): `inspect.getsource`, tracebacks into the
standard library and `doctest` read it.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec

# Folders and modules that are useless or misleading in a sandbox without a
# terminal, a GUI, processes or a file system.
_SKIP = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "venv",
        "lib2to3",
        "pydoc_data",
        "__phello__",
        "site-packages",
        "__pycache__",
        "turtle.py",
        "antigravity.py",
        "this.py",
        "webbrowser.py",
    }
)

_PREFIX = "<stdlib>/"


def _collect(root: str) -> dict[str, tuple[bool, bytes, bytes]]:
    table: dict[str, tuple[bool, bytes, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split(os.sep)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP and "-" not in d)
        if parts and not os.path.exists(os.path.join(dirpath, "__init__.py")):
            continue
        for name in sorted(filenames):
            if not name.endswith(".py") or name in _SKIP:
                continue
            is_pkg = name == "__init__.py"
            mod_parts = parts if is_pkg else parts + [name[:-3]]
            if not mod_parts:
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, encoding="utf-8") as f:
                    source = f.read()
                code = compile(source, _PREFIX + os.path.relpath(path, root), "exec", dont_inherit=True)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            table[".".join(mod_parts)] = (
                is_pkg,
                zlib.compress(marshal.dumps(code), 6),
                zlib.compress(source.encode("utf-8"), 9),
            )
    return table


class StdlibFinder(MetaPathFinder, Loader):
    """Finds and loads modules from the build-time table."""

    def __init__(self, table: dict[str, tuple[bool, bytes, bytes]]) -> None:
        self._table = table

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        entry = self._table.get(fullname)
        if entry is None:
            return None
        spec = ModuleSpec(fullname, self, is_package=entry[0])
        if entry[0]:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return None

    def get_source(self, fullname: str) -> str | None:
        entry = self._table.get(fullname)
        return None if entry is None else zlib.decompress(entry[2]).decode("utf-8")

    def exec_module(self, module) -> None:  # noqa: ANN001
        is_pkg, blob, _ = self._table[module.__name__]
        code = marshal.loads(zlib.decompress(blob))
        module.__file__ = code.co_filename
        exec(code, module.__dict__)


_finder: StdlibFinder | None = None


def install(root: str) -> None:
    """Serve the standard library from memory (after the build's own finders)."""
    global _finder
    _finder = StdlibFinder(_collect(root))
    sys.meta_path.append(_finder)


def seal() -> None:
    """Stop looking at the file system: at run time there is none.

    Modules imported from the build's files keep their file names, but their
    loaders would read those files; the in-memory table becomes their loader,
    so their sources (inspect.getsource, traceback lines) still come back.
    """
    from importlib.machinery import PathFinder

    sys.meta_path[:] = [f for f in sys.meta_path if f is not PathFinder]
    sys.path_importer_cache.clear()
    if _finder is None:
        return
    for name, module in list(sys.modules.items()):
        if name in _finder._table and not isinstance(getattr(module, "__loader__", None), StdlibFinder):
            module.__loader__ = _finder
            spec = getattr(module, "__spec__", None)
            if spec is not None:
                spec.loader = _finder
