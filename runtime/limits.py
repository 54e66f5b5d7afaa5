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
    """

    model_config = ConfigDict(frozen=True)

    timeout: float = Field(30.0, gt=0, description="wall-clock seconds, also while sleeping or waiting on tools")
    fuel: int | None = Field(20_000_000_000, gt=0)
    memory_bytes: int = Field(256 * MiB, gt=0, description="the guest's linear memory, including the ~40 MiB snapshot")
    max_output_bytes: int = Field(1 * MiB, ge=0, description="stdout+stderr kept; the rest is dropped")
    max_tool_calls: int = Field(1000, ge=0)
    max_frame_bytes: int = Field(16 * MiB, gt=0, description="largest call frame or reply crossing the boundary")
