"""The first step of a call: find the tool once, authorize it, validate its parameters.

Authorization is by the executor's own catalog, never by anything the frame
says. What a tool needs for every call (its definition, handler, merged
policy and validator) is looked up once per catalog revision and handed on
as one `Tool`, so no later step looks anything up again.

Validation grows with the frame, so `prepare` runs on the execution's own
thread (under its deadline and budget), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ptc.catalog import Binding, ToolCatalog, ToolDefinition
from ptc.hostcalls.calls.failures import CallFailed, clipped, text_of
from ptc.hostcalls.calls.validation import ParameterError, Validator
from ptc.hostcalls.wasm import codec
from ptc.policy import Policy


def _any_parameters(args: Any) -> dict[str, Any]:
    """An open tool's check (`ToolTable(open_tools=)`): any map of parameters, passed on as it is."""
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise ParameterError("the parameters must be a map with string keys")
    return args


Check = Callable[[Any], dict[str, Any]]
MAX_LINE = 500


@dataclass
class Tool:
    """One tool as this executor runs it (for one catalog revision)."""

    definition: ToolDefinition
    binding: Binding | None
    policy: Policy
    open: bool = False  # no declared parameters to check them against (a shim's tool_map entry)
    _validator: Check | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    def validator(self) -> Check:
        """Built on first use: a schema pydantic cannot build a model from fails only this tool, plainly."""
        if self._validator is None and self.open:
            self._validator = _any_parameters
        if self._validator is None:
            assert self.binding is not None
            try:
                self._validator = Validator(self.definition, self.binding)
            except Exception as exc:
                message = f"{self.name} cannot be called: ptc could not build a validator from its schema"
                raise CallFailed("ToolError", message, f"{message} ({type(exc).__name__}: {text_of(exc)})") from None
        return self._validator


@dataclass(frozen=True)
class Prepared:
    """A call that passed authorization and validation (on the sandbox thread)."""

    tool: Tool
    params: dict[str, Any]
    key: str | None  # the idempotency key, if the program gave one
    policy: Policy  # the tool's, its timeout shortened if the call asked (`call_tool(..., timeout=)`)
    line: str | None = None  # the program's source line of the call, as the guest says (text only)


class ToolTable:
    """The executor's tools: its catalog, the handlers bound to them, the policies that apply."""

    def __init__(
        self,
        catalog: ToolCatalog,
        *,
        handlers: Mapping[str, Binding] | None = None,
        policy: Policy | None = None,
        policies: Mapping[str, Policy] | None = None,
        open_tools: frozenset[str] = frozenset(),
    ) -> None:
        self.catalog = catalog
        self.open_tools = open_tools
        self.handlers = dict(handlers or {})
        self.policy = policy or Policy()
        self.policies = dict(policies or {})
        self._tools: dict[str, Tool] = {}
        self._revision = -1
        self._approval_tools: list[str] | None = None

    def bind(self, handlers: Mapping[str, Binding]) -> None:
        self.handlers.update(handlers)
        self._tools.clear()
        self._approval_tools = None

    def get(self, name: object) -> Tool | None:
        """The tool of that name in this catalog, or None (authorization: nothing else is callable)."""
        if self._revision != self.catalog.revision:
            self._tools.clear()
            self._approval_tools = None
            self._revision = self.catalog.revision
        if not isinstance(name, str):
            return None
        tool = self._tools.get(name)
        if tool is None:
            definition = self.catalog.get(name)
            if definition is None:
                return None
            policy = self.policy.merged(definition.policy).merged(self.policies.get(name))
            binding = self.handlers.get(name) or self.catalog.binding(name)
            tool = self._tools[name] = Tool(definition, binding, policy, open=name in self.open_tools)
        return tool

    def approval_tools(self) -> list[str]:
        """The tools whose calls wait for an approval (the guest sends those calls' source line)."""
        self.get(None)  # a new revision clears what was looked up, this list included
        if self._approval_tools is None:
            self._approval_tools = sorted(
                name
                for name in (d.name for d in self.catalog)
                if (tool := self.get(name)) and tool.policy.requires_approval
            )
        return self._approval_tools

    def find(self, name: object, domain: object = None) -> Tool | None:
        """`get`, and for `call_tool(server="travel", tool_name="book")` also `travel.book` (an agent's skill)."""
        tool = self.get(name)
        if tool is None and isinstance(domain, str) and isinstance(name, str):
            tool = self.get(f"{domain}.{name}")
        return tool

    def prepare(self, name: str, request: dict[str, Any] | codec.FrameError, tool: Tool | None) -> Prepared:
        """Authorize and validate a call, or raise CallFailed; `tool` is what `find` gave for it (looked up once)."""
        if isinstance(request, codec.FrameError):
            raise CallFailed("ToolError", f"rejected call: {request}")
        domain = request.get("domain")
        if tool is None:
            raise CallFailed("ToolNotFoundError", f"no tool named {clipped(name, 100)!r} in this catalog")
        if tool.binding is None:
            raise CallFailed("ToolError", f"tool {tool.name!r} has no handler bound")
        if domain is not None and domain != tool.definition.domain:  # `call_tool(server=...)` names the domain
            raise CallFailed(
                "ToolNotFoundError", f"no tool named {clipped(name, 100)!r} in {clipped(str(domain), 100)!r}"
            )
        key = request.get("key")
        if key is not None and not isinstance(key, str):
            raise CallFailed("ToolValidationError", "idempotency_key must be a string")
        try:
            params = tool.validator()(request.get("args", {}))
        except ParameterError as exc:
            raise CallFailed("ToolValidationError", str(exc)) from None
        line = request.get("line")
        line = line[:MAX_LINE] if isinstance(line, str) else None
        return Prepared(tool, params, key, _shortened(tool.policy, request.get("timeout")), line)


def _shortened(policy: Policy, timeout: object) -> Policy:
    """A program may ask for a shorter timeout than the tool's, never a longer one."""
    if timeout is None:
        return policy
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise CallFailed("ToolValidationError", "timeout must be a positive number of seconds")
    if policy.timeout is not None and policy.timeout <= timeout:
        return policy
    return policy.model_copy(update={"timeout": float(timeout)})
