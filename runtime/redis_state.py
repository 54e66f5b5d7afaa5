"""Shared policy state in Redis: `ProgrammaticToolExecutor(state="redis://host:6379/0")` or `state=RedisState(url)`.

Every operation is one Lua script (or one command), so it is atomic in the
server, and every time in it is the server's (`TIME`), so machines whose
clocks disagree still agree on what expired. What a process holds (an
idempotency claim, a quota slot) is a lease of `lease` seconds that a
heartbeat of this process renews every `lease / 3`: a process that dies, or
loses the server for longer than a lease, gives it back.

The client is redis-py's asyncio API (the `ptc[redis]` extra). An asyncio
client belongs to one event loop and executors are called from many
(`execute_sync` makes one per call), so each loop that calls gets a client
of its own, awaited right there (a hop to another thread costs a GIL
switch, milliseconds while programs run); a private loop on a daemon thread
holds one more, for what has no caller's loop: the heartbeat, releases
sent from synchronous code, and blocking calls (opening a session). A
closed loop's client is dropped when the next new loop comes.

Redis down: without `fallback`, every operation raises StateUnavailableError
(the callers turn it into a failed tool call or a refused admission, never a
silent local decision). With `fallback=True` the callers use their
in-process state instead, a warning goes to the `ptc` logger and to
`on_warning` callbacks (the executor turns it into a `state_fallback` event),
and after `retry_after` seconds the next operation tries the server again;
the first that succeeds says so (`state_restored`). Messages name the server
as `redis://host:port/db`, never with its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from ptc.errors import PtcError, StateUnavailableError, require_redis
from ptc.events import logger
from ptc.loop_thread import LoopThread
from ptc.private.asyncio import running_loop
from ptc.state import BreakerAnswer, ClaimStatus, JournalKind, SlotStatus

_T = TypeVar("_T")

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: claim, result. ARGV: token, lease ms.
_CLAIM = """
local r = redis.call('GET', KEYS[2])
if r then return {'done', r} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'claimed', ''} end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return {'claimed', ''} end
return {'busy', ''}
"""
# KEYS: claim, result. ARGV: token, reply, ttl ms, store ('1' or '0').
_FINISH = """
if ARGV[4] == '1' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# KEYS: claim. ARGV: token, lease ms.
_RENEW_CALL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: breaker hash. ARGV: reset ms, trial lease ms, token, keep ms.
_BREAKER_BEFORE = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'opened', 'trial', 'trial_exp')
local state = h[1] or 'closed'
local before = state
if state == 'closed' then return {before, state, 'go', '0'} end
local reset = tonumber(ARGV[1])
local waited = now - tonumber(h[2] or '0')
if state == 'open' and waited >= reset then
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state)
end
if state == 'half_open' then
  if (not h[3]) or h[3] == '' or now >= tonumber(h[4] or '0') then
    redis.call('HSET', KEYS[1], 'trial', ARGV[3], 'trial_exp', now + tonumber(ARGV[2]))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {before, state, 'trial', '0'}
  end
  return {before, state, 'refuse', tostring(tonumber(h[4]) - now)}
end
return {before, state, 'refuse', tostring(math.max(0, reset - waited))}
"""
)
# KEYS: breaker hash. ARGV: ok ('1'/'0'), threshold, token, keep ms.
_BREAKER_RECORD = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'trial')
local state = h[1] or 'closed'
if ARGV[3] ~= '' and h[2] == ARGV[3] then redis.call('HDEL', KEYS[1], 'trial', 'trial_exp') end
if ARGV[1] == '1' then
  if state == 'closed' then
    if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'failures', 0) end
    return {state, 'closed'}
  end
  redis.call('HSET', KEYS[1], 'failures', 0, 'state', 'closed')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {state, 'closed'}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', now)
  redis.call('HDEL', KEYS[1], 'trial', 'trial_exp')
  return {state, 'open'}
end
return {state, state}
"""
)
# KEYS: breaker hash. ARGV: token.
_BREAKER_RELEASE = """
if redis.call('HGET', KEYS[1], 'trial') == ARGV[1] then redis.call('HDEL', KEYS[1], 'trial', 'trial_exp') end
return 1
"""
# KEYS: running (zset: token -> expiry), queue (token -> expiry), order (token -> arrival), sequence.
# ARGV: token, limit, max queued, lease ms. Queued tokens are admitted in arrival order.
_TAKE = (
    _NOW
    + """
local token, limit, maxq, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, m in ipairs(gone) do redis.call('ZREM', KEYS[3], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], lease * 3) end
if redis.call('ZSCORE', KEYS[1], token) then redis.call('ZADD', KEYS[1], now + lease, token) return 'ok' end
local free = limit - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[3], token)
local queued = redis.call('ZCARD', KEYS[3])
if free > 0 and ((rank and rank < free) or ((not rank) and queued < free)) then
  redis.call('ZADD', KEYS[1], now + lease, token)
  redis.call('PEXPIRE', KEYS[1], lease * 3)
  if rank then redis.call('ZREM', KEYS[2], token) redis.call('ZREM', KEYS[3], token) end
  return 'ok'
end
if rank then redis.call('ZADD', KEYS[2], now + lease, token) return 'queued' end
if queued >= maxq then return 'full' end
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), token)
redis.call('ZADD', KEYS[2], now + lease, token)
for i = 2, 3 do redis.call('PEXPIRE', KEYS[i], lease * 3) end
return 'queued'
"""
)
# KEYS: running, queue, order. ARGV: token.
_FREE = """
redis.call('ZREM', KEYS[1], ARGV[1]) redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
# KEYS: running. ARGV: token, lease ms.
_RENEW_SLOT = (
    _NOW
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 3)
  return 1
end
return 0
"""
)


@dataclass
class _Conn:
    """One event loop's client and its registered scripts."""

    client: Any
    scripts: dict[str, Any]

    @classmethod
    def made(cls, client: Any) -> _Conn:
        sources = {
            "claim": _CLAIM,
            "finish": _FINISH,
            "renew_call": _RENEW_CALL,
            "before": _BREAKER_BEFORE,
            "record": _BREAKER_RECORD,
            "release": _BREAKER_RELEASE,
            "take": _TAKE,
            "free": _FREE,
            "renew_slot": _RENEW_SLOT,
        }
        return cls(client, {name: client.register_script(source) for name, source in sources.items()})


class _Down(PtcError):
    """The server could not be reached (internal: the caller decides between fallback and an error)."""


def redacted(url: str) -> str:
    """The URL as messages may show it: scheme, host, port and database, never a user or password."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "redis://<unparsable url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisState:
    """Policy state shared through one Redis server by every executor that names it (see the module docstring).

    url: `redis://[:password@]host:port/db` (or `rediss://`, `unix://`), as redis-py reads it.
    fallback: when the server cannot be reached, use in-process state with a
        warning instead of failing with StateUnavailableError.
    lease: seconds a claim or slot outlives the last renewal of its holder
        (a dead process's claims and slots come back after it).
    prefix: every key starts with it (several fleets, one server).
    journal_ttl: how long stored journals are kept (seconds).
    timeout: seconds for one connection attempt or command.
    retry_after: with fallback, seconds in-process before trying the server again.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        fallback: bool = False,
        lease: float = 10.0,
        prefix: str = "ptc:",
        journal_ttl: float = 7 * 86400.0,
        timeout: float = 2.0,
        retry_after: float = 1.0,
    ) -> None:
        require_redis("RedisState (shared policy state)")
        if lease <= 0 or timeout <= 0 or journal_ttl <= 0:
            raise ValueError("RedisState needs lease, timeout and journal_ttl > 0")
        import redis.asyncio as aioredis

        self.fallback = fallback
        self.lease = float(lease)
        self.prefix = prefix
        self.journal_ttl = float(journal_ttl)
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self._name = redacted(url)
        self._warnings: list[Callable[[str], None]] = []
        self._down_until = 0.0
        self._down = False
        self._held: dict[tuple[str, str, str], None] = {}  # (kind, key, token) renewed by the heartbeat
        self._closed = False
        self._sending: set[asyncio.Task[None]] = set()  # releases in flight on callers' loops (kept from the GC)
        self._thread = LoopThread("ptc-redis-state")
        self._loop = self._thread.loop

        self._open = partial(
            aioredis.Redis.from_url, url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False
        )
        # how to make this store again in another process (ptc.ray's actors): the URL and the options
        self.factory: Callable[[], RedisState] = partial(
            RedisState,
            url,
            fallback=fallback,
            lease=lease,
            prefix=prefix,
            journal_ttl=journal_ttl,
            timeout=timeout,
            retry_after=retry_after,
        )
        # one client per event loop (an asyncio client belongs to one): awaited on the caller's own loop, no
        # thread hop; the private loop's does what has no caller's loop (the heartbeat, releases, sync calls)
        # (a plain dict: a client refers to its loop, so weak keys would never go; closed loops are swept instead)
        self._clients: dict[asyncio.AbstractEventLoop, _Conn] = {}

        async def make() -> _Conn:
            self._heartbeat = asyncio.ensure_future(self._beat())
            return self._connect()

        try:
            self._private = asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=30)
        except ValueError:  # a malformed URL: say so without echoing it (it may hold the password)
            self.close()
            raise ValueError(f"not a Redis URL redis-py can read: {self._name}") from None
        self._clients[self._loop] = self._private

    def _connect(self) -> _Conn:
        return _Conn.made(self._open())

    def __repr__(self) -> str:
        return f"RedisState({self._name!r}, fallback={self.fallback})"

    @property
    def name(self) -> str:
        return self._name

    def on_warning(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._warnings.append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._warnings.remove(callback)

        return off

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held.clear()

        async def last() -> None:
            heartbeat = getattr(self, "_heartbeat", None)
            if heartbeat is not None:
                heartbeat.cancel()
            private = getattr(self, "_private", None)
            if private is not None:
                with contextlib.suppress(Exception):
                    await private.client.aclose()

        self._thread.close(last, timeout=5)

    # -- running operations on the private loop --------------------------------------------------
    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _guard(self, make: Callable[[_Conn], Awaitable[_T]], conn: _Conn) -> _T:
        import redis.exceptions

        try:
            value = await make(conn)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError) as exc:
            self._went_down(type(exc).__name__)
            raise _Down(type(exc).__name__) from None
        except redis.exceptions.RedisError as exc:  # BUSY, LOADING, READONLY...: not ours to use now
            self._went_down(type(exc).__name__)
            raise _Down(type(exc).__name__) from None
        if self._down:
            self._down = False
            self._warn(f"shared state {self._name} is reachable again: back to shared state")
        return value

    def _went_down(self, why: str) -> None:
        self._down_until = time.monotonic() + self.retry_after
        if not self._down:
            self._down = True
            then = "falling back to in-process state" if self.fallback else "calls that need it fail"
            self._warn(f"shared state {self._name} is unavailable ({why}): {then}")

    def _warn(self, message: str) -> None:
        logger.warning("ptc: %s", message)
        for callback in list(self._warnings):
            try:
                callback(message)
            except Exception:  # noqa: BLE001 - a listener's bug is not the store's
                logger.exception("ptc: a state warning callback raised")

    def _unavailable(self, why: str) -> StateUnavailableError:
        return StateUnavailableError(f"shared state {self._name} is unavailable ({why})")

    def _skip(self) -> bool:
        """With fallback, while the server is known down: in-process without trying (until retry_after)."""
        return self.fallback and time.monotonic() < self._down_until

    async def _run(self, make: Callable[[_Conn], Awaitable[_T]], local: _T, *, needed: bool = False) -> _T:
        """`make(this loop's client)`; `local` when down with fallback (`needed`: nothing local can stand in)."""
        if self._skip() and not needed:
            return local
        if self._closed:
            raise StateUnavailableError(f"shared state {self._name} was closed")
        loop = asyncio.get_running_loop()
        conn = self._clients.get(loop)
        if conn is None:
            for gone in [other for other in list(self._clients) if other.is_closed()]:  # execute_sync's, done
                self._clients.pop(gone, None)
            conn = self._clients[loop] = self._connect()  # no I/O yet: it connects on its first command
        try:
            return await self._guard(make, conn)
        except _Down as exc:
            if self.fallback and not needed:
                return local
            raise self._unavailable(str(exc)) from None

    def _run_sync(self, make: Callable[[_Conn], Awaitable[_T]], local: _T) -> _T:
        """`make` on the private loop, this thread blocking for it (callers without a loop of their own)."""
        if self._skip():
            return local
        if self._closed:
            raise StateUnavailableError(f"shared state {self._name} was closed")
        future = asyncio.run_coroutine_threadsafe(self._guard(make, self._private), self._loop)
        try:
            return future.result(timeout=self.timeout * 3 + 1)
        except _Down as exc:
            if self.fallback:
                return local
            raise self._unavailable(str(exc)) from None
        except TimeoutError:
            future.cancel()
            if self.fallback:
                return local
            raise self._unavailable("TimeoutError") from None

    def _send(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire and forget on the private loop (a release: its lease covers it if it is lost)."""
        if self._closed:
            coro.close()
            return
        asyncio.run_coroutine_threadsafe(self._quietly(coro), self._loop)

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
        with contextlib.suppress(Exception):
            await coro

    async def _beat(self) -> None:
        """Renew what this process holds, every lease / 3 (on the private loop)."""
        lease_ms = int(self.lease * 1000)
        while True:
            await asyncio.sleep(self.lease / 3)
            for kind, key, token in list(self._held):
                with contextlib.suppress(Exception):
                    if kind == "call":
                        await self._private.scripts["renew_call"](keys=[key], args=[token, lease_ms])
                    else:
                        await self._private.scripts["renew_slot"](keys=[key], args=[token, lease_ms])

    # -- idempotency ------------------------------------------------------------------------
    async def claim_call(self, key: str, token: str) -> tuple[ClaimStatus, str | None]:
        key = self.prefix + key

        async def op(c: _Conn) -> tuple[ClaimStatus, str | None]:
            status, reply = await c.scripts["claim"](
                keys=[key + ":claim", key + ":result"], args=[token, int(self.lease * 1000)]
            )
            if status == b"done":
                return "done", bytes(reply).decode("utf-8", "surrogatepass")
            if status == b"claimed":
                self._held[("call", key + ":claim", token)] = None
                return "claimed", None
            return "busy", None

        return await self._run(op, ("local", None))

    async def finish_call(self, key: str, token: str, reply: str | None, ttl: float) -> None:
        key = self.prefix + key
        self._held.pop(("call", key + ":claim", token), None)
        data = b"" if reply is None else reply.encode("utf-8", "surrogatepass")

        async def op(c: _Conn) -> None:
            await c.scripts["finish"](
                keys=[key + ":claim", key + ":result"],
                args=[token, data, max(1, int(ttl * 1000)), "0" if reply is None else "1"],
            )

        await self._run(op, None)

    # -- breakers ---------------------------------------------------------------------------
    def _keep_ms(self, reset: float) -> int:
        return int(max(3600.0, reset * 10) * 1000)

    async def breaker_before(self, key: str, reset: float, trial_lease: float, token: str) -> BreakerAnswer | None:
        key = self.prefix + key

        async def op(c: _Conn) -> BreakerAnswer:
            before, after, verdict, wait = await c.scripts["before"](
                keys=[key], args=[int(reset * 1000), max(1, int(trial_lease * 1000)), token, self._keep_ms(reset)]
            )
            return before.decode(), after.decode(), verdict.decode(), float(wait) / 1000

        return await self._run(op, None)

    async def breaker_record(self, key: str, ok: bool, threshold: int, token: str) -> tuple[str, str] | None:
        key = self.prefix + key

        async def op(c: _Conn) -> tuple[str, str]:
            before, after = await c.scripts["record"](
                keys=[key], args=["1" if ok else "0", threshold, token, self._keep_ms(3600.0)]
            )
            return before.decode(), after.decode()

        return await self._run(op, None)

    async def breaker_release(self, key: str, token: str) -> None:
        key = self.prefix + key

        async def op(c: _Conn) -> None:
            await c.scripts["release"](keys=[key], args=[token])

        await self._run(op, None)

    # -- quotas -------------------------------------------------------------------------------
    def _pool_keys(self, pool: str) -> list[str]:
        return [pool + ":run", pool + ":queue", pool + ":order", pool + ":seq"]

    async def take_slot(self, pool: str, token: str, limit: int, max_queued: int) -> SlotStatus:
        pool = self.prefix + pool

        async def op(c: _Conn) -> SlotStatus:
            answer = await c.scripts["take"](
                keys=self._pool_keys(pool), args=[token, limit, max_queued, int(self.lease * 1000)]
            )
            status = cast(SlotStatus, answer.decode())
            if status == "ok":
                self._held[("slot", pool + ":run", token)] = None
            return status

        return await self._run(op, "local")

    def take_slot_now(self, pool: str, token: str, limit: int) -> bool | None:
        pool = self.prefix + pool

        async def op(c: _Conn) -> bool:
            answer = await c.scripts["take"](keys=self._pool_keys(pool), args=[token, limit, 0, int(self.lease * 1000)])
            if answer == b"ok":
                self._held[("slot", pool + ":run", token)] = None
                return True
            return False

        return self._run_sync(op, None)

    def free_slot(self, pool: str, token: str) -> None:
        pool = self.prefix + pool
        self._held.pop(("slot", pool + ":run", token), None)
        keys = self._pool_keys(pool)[:3]
        loop = running_loop()
        conn = None if loop is None else self._clients.get(loop)
        if loop is None or conn is None or self._closed:
            self._send(self._private.scripts["free"](keys=keys, args=[token]))
            return
        task = loop.create_task(self._quietly(conn.scripts["free"](keys=keys, args=[token])))  # no thread hop
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    # -- journals -----------------------------------------------------------------------------
    async def put_journal(self, kind: JournalKind, id_: str, text: str, ttl: float) -> bool:
        async def op(c: _Conn) -> bool:
            await c.client.set(self._key("journal", kind, id_), text.encode(), px=max(1, int(ttl * 1000)))
            return True

        return await self._run(op, False)

    async def get_journal(self, kind: JournalKind, id_: str) -> str | None:
        async def op(c: _Conn) -> str | None:
            data = await c.client.get(self._key("journal", kind, id_))
            return None if data is None else bytes(data).decode("utf-8", "replace")

        return await self._run(op, None, needed=True)  # no process holds another's journals: nothing to fall back to

    async def claim_once(self, key: str, ttl: float) -> bool | None:
        async def op(c: _Conn) -> bool:
            return bool(await c.client.set(self._key("once", key), b"1", nx=True, px=max(1, int(ttl * 1000))))

        return await self._run(op, None)
