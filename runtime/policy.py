"""How calls to a tool are run: the Policy a caller sets executor-wide and per tool.

Vocabulary only; the router's steps (ptc.hostcalls.calls) apply it.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field


class Policy(BaseModel):
    """How calls to a tool are run. A per-tool Policy overrides only the fields it sets."""

    model_config = ConfigDict(frozen=True)

    timeout: float | None = Field(30.0, gt=0, description="seconds per attempt; None: no per-call timeout")
    max_retries: int = Field(0, ge=0, description="extra attempts after a transient failure")
    backoff: float = Field(0.1, ge=0, description="base delay; attempt n waits backoff * 2**n, jittered ±50%")
    circuit_failure_threshold: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    circuit_reset_timeout: float = Field(30.0, ge=0, description="seconds open before a half-open trial")
    idempotency_ttl: float = Field(3600.0, ge=0, description="seconds a result is kept for its idempotency key")
    parse_json_text: bool = Field(
        True,
        description=(
            "a backend's text result (an MCP tool with no outputSchema, an A2A text part) that is a JSON "
            "object or array reaches the program as data; False keeps the text"
        ),
    )
    inline: bool = Field(
        False,
        description=(
            "run the call on the sandbox's own thread, with no thread hop (~4x faster round trip), for "
            "handlers that answer at once: a sync handler there cannot be timed out, an async one runs on "
            "that thread's own event loop, and calls under gather run one after another"
        ),
    )

    requires_approval: bool = Field(
        False,
        description=(
            "ask the executor's on_approval callback before each call runs (none, or ptc.DEFER: the execution "
            "suspends until executor.resume() brings the decision); the call never runs inline"
        ),
    )

    max_result_bytes: int | None = Field(
        None,
        gt=0,
        description=(
            "the largest result passed to the program, in bytes as encoded for the sandbox; a larger one raises "
            "ToolResultTooLarge (naming both sizes) so the program can ask for less; the stub's docstring says it"
        ),
    )

    def merged(self, override: Policy | None) -> Policy:
        if override is None:
            return self
        return self.model_copy(update={name: getattr(override, name) for name in override.model_fields_set})

    def delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (1-based), with jitter."""
        return self.backoff * (2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)
