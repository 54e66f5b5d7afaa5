"""Per-execution limits: every one has a default and every one can be set."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024


class Limits(BaseModel):
    """What one execution may use. Hitting any limit ends it with a named error kind.

    fuel is a deterministic CPU budget (wasmtime fuel units, roughly one per
    wasm instruction; the default is a few seconds of pure-Python work);
    None turns fuel metering off for this execution (the wall-clock timeout
    still holds).

    What the program makes the host hold is bounded too, by its own size:
    max_host_bytes defaults to memory_bytes, so an execution can cost the
    host at most about twice its sandbox (see ptc.hostcalls.wasm.budget), and
    max_frame_items bounds the work of decoding one frame (~1 µs each).
    """

    model_config = ConfigDict(frozen=True)

    timeout: float = Field(30.0, gt=0, description="wall-clock seconds, also while sleeping or waiting on tools")
    fuel: int | None = Field(20_000_000_000, gt=0)
    memory_bytes: int = Field(256 * MiB, gt=0, description="the guest's linear memory, including the ~40 MiB snapshot")
    max_output_bytes: int = Field(1 * MiB, ge=0, description="stdout+stderr kept; the rest is dropped")
    max_result_bytes: int | None = Field(
        None,
        gt=0,
        description=(
            "the program's final value, encoded, kept up to this size; a larger one is dropped and "
            "result.dropped says its size and this cap (None: up to max_frame_bytes)"
        ),
    )
    max_tool_calls: int = Field(1000, ge=0)
    max_frame_bytes: int = Field(16 * MiB, gt=0, description="largest call frame or reply crossing the boundary")
    max_frame_items: int = Field(
        250_000, gt=0, description="most elements (list items, map keys and values) in one call frame or report"
    )
    typecheck: bool = Field(
        False,
        description=(
            "type-check a one-shot program against the stubs before it runs (needs ptc[typecheck]); "
            'one with type errors is refused, error.kind "type_error", and no tool is called'
        ),
    )
    max_host_bytes: int | None = Field(
        None,
        gt=0,
        description=(
            "host memory the program may make ptc hold for it at once (decoded calls and their records, "
            "queued replies, output, the report); None: the same as memory_bytes"
        ),
    )

    @property
    def host_bytes(self) -> int:
        """The host budget in bytes (max_host_bytes, else memory_bytes)."""
        return self.max_host_bytes if self.max_host_bytes is not None else self.memory_bytes
