"""Program stdout/stderr, sent to the host in chunks.

Both streams share one buffer so the host sees them in the order they were
written. Once the host answers that the output cap is reached, nothing more is
sent: the program keeps running, its output is dropped.

What is buffered is also sent before the program blocks in the host (a wait
for tool replies, a sleep, a sync call: `flush_before_blocking`), so the host
sees output as the program prints it (live output, `on_output`), not only
in 8 KiB chunks or at the end.
"""

from __future__ import annotations

import io

from wit_world.imports import host

_CHUNK = 8192
# The most handed to the host in one write: wasmtime copies a string argument
# whole before the host can look at its size, so one huge print goes in slices.
_SLICE = 256 * 1024


class _Sink:
    """The text written since the last flush: runs of one stream each (`runs`), the last one still open
    (`fd`, `texts`), so a flush joins lists instead of grouping parts (a print is two writes)."""

    def __init__(self) -> None:
        global _current
        self.runs: list[tuple[int, str]] = []
        self.texts: list[str] = []
        self.fd = 1
        self.size = 0
        self.open = True
        _current = self

    def reopen(self) -> None:
        """A new cell of a session: its output starts empty, under its own cap."""
        global _current
        self.runs, self.texts, self.size, self.open = [], [], 0, True
        _current = self

    def add(self, fd: int, text: str) -> None:
        if not self.open or not text:
            return
        if fd != self.fd:
            if self.texts:
                self.runs.append((self.fd, "".join(self.texts)))
                self.texts = []
            self.fd = fd
        self.texts.append(text)
        self.size += len(text)
        if self.size >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.texts:
            self.runs.append((self.fd, "".join(self.texts)))
            self.texts = []
        runs, self.runs, self.size = self.runs, [], 0
        for fd, text in runs:
            self._send(fd, text)

    def _send(self, fd: int, text: str) -> None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates are not valid text for the host
            text = text.encode("utf-8", "replace").decode("utf-8")
        if len(text) <= _SLICE:
            if self.open and not host.write(fd, text):
                self.open = False
            return
        for start in range(0, len(text), _SLICE):
            if self.open and not host.write(fd, text[start : start + _SLICE]):
                self.open = False


_current: _Sink | None = None  # the running program's


def flush_before_blocking() -> None:
    """The program is about to block in the host: send what it printed so far first."""
    sink = _current
    if sink is not None and (sink.texts or sink.runs):
        sink.flush()


class HostWriter(io.TextIOBase):
    def __init__(self, sink: _Sink, fd: int) -> None:
        self._sink = sink
        self._fd = fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        s.encode("utf-8")  # as a real UTF-8 stdout: a lone surrogate raises UnicodeEncodeError here
        self._sink.add(self._fd, s)
        return len(s)

    def flush(self) -> None:
        self._sink.flush()

    def isatty(self) -> bool:
        return False


def make_streams() -> tuple[_Sink, HostWriter, HostWriter]:
    sink = _Sink()
    return sink, HostWriter(sink, 1), HostWriter(sink, 2)
