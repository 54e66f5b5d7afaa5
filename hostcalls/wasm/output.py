"""A program's stdout and stderr as the host keeps them: interleaved, capped, charged to the budget.

The cap is the smaller of what the limits keep (`max_output_bytes`) and
what the host may still hold (the execution's budget). The trampolines read
a `write` only up to `room()` (+4 bytes, so a clipped text still shows as
cut); past the cap the text is cut at a character boundary, and once
truncated every later write is refused, so the program learns at once that
nothing more is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ptc.hostcalls.wasm.budget import HostBudget, Oversize


@dataclass
class Output:
    max_bytes: int
    budget: HostBudget
    parts: list[tuple[int, str]] = field(default_factory=list)  # (1 stdout | 2 stderr, text), as written
    bytes: int = 0
    truncated: bool = False

    def room(self) -> int:
        return max(0, min(self.max_bytes - self.bytes, self.budget.room()))

    def write(self, fd: int, text: str | Oversize) -> bool:
        """Keep what fits; False once the output is cut (the program stops sending more)."""
        if self.truncated or isinstance(text, Oversize):
            self.truncated = True
            return False
        fd = 1 if fd == 1 else 2  # anything not stdout is stderr
        data = text.encode("utf-8", "surrogatepass")
        room = self.room()
        if len(data) > room:
            text = data[:room].decode("utf-8", "ignore")
            self.truncated = True
        if text:
            kept = min(len(data), room)
            self.budget.force(kept)
            self.parts.append((fd, text))
            self.bytes += kept
        return not self.truncated

    def joined(self) -> tuple[str, str, str]:
        """(interleaved, stdout, stderr)."""
        both = "".join(text for _, text in self.parts)
        out = "".join(text for fd, text in self.parts if fd == 1)
        err = "".join(text for fd, text in self.parts if fd == 2)
        return both, out, err
