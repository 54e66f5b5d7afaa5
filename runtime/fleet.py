"""The executor's side of shared state (ptc.state): which store, its warnings as events, quotas over it.

`state="redis://..."` makes a RedisState the executor owns (and closes);
a store object given is the caller's, shared by as many executors as it
likes. A store's warnings (down, falling back; back again) become
`state_unavailable` / `state_restored` events of every executor using it.
"""

from __future__ import annotations

from ptc.events import EventBus, EventKind, ToolEvent
from ptc.state import SharedState


def shared_state(state: str | SharedState | None) -> tuple[SharedState | None, bool]:
    """(the store, whether the executor owns it): a URL makes a RedisState of its own."""
    if state is None:
        return None, False
    if isinstance(state, str):
        from ptc.redis_state import RedisState

        return RedisState(state), True
    if not isinstance(state, SharedState):
        raise TypeError(f"state must be None, a Redis URL or a ptc.RedisState, not {type(state).__name__}")
    return state, False


def state_warning(events: EventBus, tenant_id: str, message: str) -> None:
    kind: EventKind = "state_restored" if "reachable again" in message else "state_unavailable"
    events.emit(ToolEvent(kind=kind, tool="", tenant_id=tenant_id, text=message))
