"""Build the guest component from `app/` and `wit/`, cached per machine.

The component is built on first use (once per machine; with the compile
for wasmtime that follows, see `ptc.engine`, a first run takes about 20-90 s
on 2 cores: measured 19, 26, 46 and 71 s, of which the build 12-16 s when idle)
into the cache folder (`$PTC_CACHE_DIR`, default
`~/.cache/ptc`) under a key of its sources and tool versions, so an edited
guest is rebuilt and an unchanged one never is. `build_guest.sh` runs the
same build ahead of time. The steps and their elapsed time go to stderr
(`progress()`): a ticking counter on a terminal, one line per step otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "app"
WIT_DIR = HERE / "wit"
WORLD = "sandbox"
APP_MODULE = "ptc_guest"
# msgpack runs in the guest as its pure-Python fallback.
_MSGPACK_FILES = ("__init__.py", "exceptions.py", "ext.py", "fallback.py")


class GuestBuildError(RuntimeError):
    """componentize-py could not build the guest; the message carries its output."""


def cache_dir() -> Path:
    root = os.environ.get("PTC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ptc")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sources() -> list[Path]:
    return sorted([*APP_DIR.glob("*.py"), *APP_DIR.glob("*.wat"), *WIT_DIR.glob("*.wit")])


def source_key() -> str:
    """A digest of everything the component is made from."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("componentize-py", "msgpack", "wasmtime"):
        digest.update(f"{dist}={metadata.version(dist)}".encode())
    return digest.hexdigest()[:16]


FIRST_RUN_TIME = "about 20-90 s on 2 cores"  # build + compile: measured 19, 26, 46 and 71 s on one 2-core machine
BUILD_TIME = "10-60 s"  # the componentize-py step alone: 12-16 s on an idle 2-core machine


@contextlib.contextmanager
def progress(step: str, *, stream: object = None, tick: float = 1.0) -> Iterator[None]:
    """Say on stderr that `step` runs, how long it has run, and how long it took.

    On a terminal the line ticks in place ("ptc: building ... 12 s") and ends
    "done in 46.2 s"; anywhere else (a log, an MCP client reading stderr) it
    is two plain lines, at the start and at the end, with the same figures.
    """
    out: Any = stream if stream is not None else sys.stderr
    try:
        tty = bool(out.isatty())
    except (AttributeError, ValueError):
        tty = False
    started = time.monotonic()
    stop = threading.Event()

    def write(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not fail the build
            out.write(text)
            out.flush()

    width = shutil.get_terminal_size().columns - 1  # a line that wraps cannot be redrawn with \r

    def line(status: str) -> str:
        text = f"ptc: {step}..."
        room = width - len(status) - 1
        if len(text) > room:  # the step gives way, never the figures
            text = text[: max(0, room - 3)] + "..."
        return f"\r{text} {status}\x1b[K"

    def ticking() -> None:
        while not stop.wait(tick):
            write(line(f"{time.monotonic() - started:.0f} s"))

    ticker = None
    if tty:
        write(line("0 s"))
        ticker = threading.Thread(target=ticking, name="ptc-progress", daemon=True)
        ticker.start()
    else:
        write(f"ptc: {step}...\n")
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        elapsed = time.monotonic() - started
        write(line(f"{outcome} {elapsed:.1f} s") + "\n" if tty else f"ptc: {step}: {outcome} {elapsed:.1f} s\n")


@contextlib.contextmanager
def _locked(path: Path, *, quiet: bool = False) -> Iterator[None]:
    """One builder per machine: parallel processes wait for the first (and say so)."""
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting = progress("waiting for another process building the sandbox guest")
            with waiting if not quiet else contextlib.nullcontext():
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Native extensions: componentize-py links `*.cpython-314-wasm32-wasi.so` files
# it finds on the path into the component (CPython 3.14 is what it ships).
_EXTENSION_SUFFIX = ".cpython-314-wasm32-wasi.so"


def _stage(into: Path) -> None:
    for path in APP_DIR.glob("*.py"):
        shutil.copy(path, into / path.name)
    from wasmtime import wat2wasm

    for path in APP_DIR.glob("*.wat"):
        (into / (path.stem + _EXTENSION_SUFFIX)).write_bytes(wat2wasm(path.read_text()))
    import msgpack

    target = into / "msgpack"
    target.mkdir()
    for name in _MSGPACK_FILES:
        shutil.copy(Path(msgpack.__file__).parent / name, target / name)


def _componentize(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ptc-guest-") as tmp:
        stage = Path(tmp)
        _stage(stage)
        cmd = [
            sys.executable,
            "-c",
            "import sys, componentize_py; sys.exit(componentize_py.script())",
            "-q",
            "-d",
            str(WIT_DIR),
            "-w",
            WORLD,
            "componentize",
            "-p",
            str(stage),
            APP_MODULE,
            "-o",
            str(out),
        ]
        # The build must not see the host's site-packages or environment.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[:40])
            raise GuestBuildError(f"componentize-py failed (exit {proc.returncode}):\n{tail}")


def guest_wasm(*, quiet: bool = False) -> Path:
    """Path of the built component, building it first if needed."""
    directory = cache_dir()
    wasm = directory / f"guest-{source_key()}.wasm"
    if wasm.exists():
        return wasm
    with _locked(directory / "build.lock", quiet=quiet):
        if wasm.exists():
            return wasm
        if not quiet:
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"ptc: first run on this machine: building the sandbox guest, then compiling it for wasmtime "
                    f"({FIRST_RUN_TIME}, once; cached in {directory})",
                    file=sys.stderr,
                    flush=True,
                )
        step = f"building the sandbox guest ({BUILD_TIME})"
        partial = wasm.with_suffix(f".partial{os.getpid()}")
        try:
            with progress(step) if not quiet else contextlib.nullcontext():
                _componentize(partial)
            os.replace(partial, wasm)
        finally:
            partial.unlink(missing_ok=True)
    return wasm


if __name__ == "__main__":
    print(guest_wasm())
    if "--precompile" in sys.argv:
        from ptc.engine import get_runtime

        get_runtime(fuel=True)  # compiles and caches the .cwasm next to the component
        get_runtime(fuel=False)  # and the epoch-only variant used by Limits(fuel=None)
