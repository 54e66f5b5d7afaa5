"""What an agent answers, as the program sees it: an AgentReply of plain values.

A reply is a Message (the agent answered at once) or a Task, which is
followed until it settles: completed, canceled, failed or rejected (final),
or input-required / auth-required (interrupted: the program may answer in
the same context). `TaskView` folds a task's stream (the task, then status
and artifact updates; an appended chunk becomes one more part of its
artifact, as in the agent's own task store) or its polled snapshots into
one task, counting the updates it followed and reporting each status change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ptc.errors import PtcError, ToolError

TEXT_LIMIT = 4000  # a failed task's text, as the program's ToolError carries it
FINAL = frozenset({"completed", "canceled", "failed", "rejected"})
INTERRUPTED = frozenset({"input-required", "auth-required"})


class AgentArtifact(TypedDict):
    """One artifact of the agent's task."""

    name: Annotated[str, Field(description="the artifact's name ('' when it has none)")]
    text: Annotated[str, Field(description="its text parts, joined by newlines")]
    data: Annotated[list[Any], Field(description="its data parts, as plain values")]


class AgentReply(TypedDict):
    """The agent's answer. A failed or rejected task raises ToolError instead."""

    text: Annotated[str, Field(description="the text parts of the agent's message, joined by newlines")]
    data: Annotated[list[Any], Field(description="the data parts of the agent's message, as plain values")]
    artifacts: Annotated[list[AgentArtifact], Field(description="what the task produced")]
    state: Annotated[
        Literal["completed", "input-required", "auth-required", "canceled"],
        Field(description="input-required: answer with send_message(..., context_id=reply['context_id'])"),
    ]
    task_id: Annotated[str | None, Field(description="the agent's task (None when it answered with a message)")]
    context_id: Annotated[str | None, Field(description="the conversation: pass it on to continue it")]


class A2AReplyTooLarge(PtcError):
    """An agent sent more than its limits allow: bytes of one response, or updates of one call."""


StatusCallback = Callable[[str, str, str], None]  # (state, task id, status text)


def state_name(state: int) -> str:
    """`TASK_STATE_INPUT_REQUIRED` -> "input-required"; an unknown number -> "unknown"."""
    from a2a.types import TaskState

    try:
        name = TaskState.Name(state)
    except ValueError:
        return "unknown"
    return name.removeprefix("TASK_STATE_").lower().replace("_", "-") if name != "TASK_STATE_UNSPECIFIED" else "unknown"


def _texts(parts: Any) -> str:
    return "\n".join(part.text for part in parts if part.HasField("text"))


def _data(parts: Any) -> list[Any]:
    from google.protobuf.json_format import MessageToDict

    return [MessageToDict(part.data) for part in parts if part.HasField("data")]


def message_reply(message: Any) -> AgentReply:
    """A Message the agent answered with at once."""
    return AgentReply(
        text=_texts(message.parts),
        data=_data(message.parts),
        artifacts=[],
        state="completed",
        task_id=message.task_id or None,
        context_id=message.context_id or None,
    )


class TaskView:
    """One task as followed: its latest state, status message and artifacts (chunks appended as parts)."""

    def __init__(self, agent: str, max_updates: int, on_status: StatusCallback) -> None:
        self.agent = agent
        self.max_updates = max_updates
        self.on_status = on_status
        self.task: Any = None  # a2a.types.Task
        self.message: Any = None  # the Message, when the agent answered with one
        self.updates = 0
        self._seen: tuple[int, str] | None = None  # (state, status message id) last reported

    @property
    def task_id(self) -> str | None:
        return self.task.id if self.task is not None and self.task.id else None

    @property
    def state(self) -> str:
        return state_name(self.task.status.state) if self.task is not None else "unknown"

    @property
    def settled(self) -> bool:
        return self.message is not None or self.state in FINAL | INTERRUPTED

    def count(self) -> None:
        """One more update followed; past the limit the call stops (and its task is cancelled)."""
        self.updates += 1
        if self.updates > self.max_updates:
            raise A2AReplyTooLarge(f"A2A agent {self.agent!r} sent more than {self.max_updates} updates in one call")

    def take(self, event: Any) -> bool:
        """Fold in one streamed event (a2a.types.StreamResponse); whether the task has settled."""
        from a2a.types import Task

        self.count()
        kind = event.WhichOneof("payload")
        if kind == "message":
            self.message = event.message
        elif kind == "task":
            self.take_task(event.task, counted=True)
        elif kind in ("status_update", "artifact_update"):
            update = getattr(event, kind)
            if self.task is None:
                self.task = Task(id=update.task_id, context_id=update.context_id)
            if kind == "status_update":
                self.task.status.CopyFrom(update.status)
                self._report()
            else:
                self._artifact(update.artifact, update.append)
        return self.settled

    def take_task(self, task: Any, *, counted: bool = False) -> None:
        """A whole task (the stream's first event, or a polled snapshot)."""
        if not counted:
            self.count()
        self.task = task
        self._report()

    def _artifact(self, artifact: Any, append: bool) -> None:
        for existing in self.task.artifacts:
            if existing.artifact_id == artifact.artifact_id:
                if not append:
                    existing.CopyFrom(artifact)
                    return
                existing.parts.extend(artifact.parts)  # as the agent's own task store keeps it (get_task)
                return
        self.task.artifacts.append(artifact)

    def _report(self) -> None:
        status = self.task.status
        seen = (status.state, status.message.message_id)
        if seen != self._seen:
            self._seen = seen
            self.on_status(self.state, self.task.id, _texts(status.message.parts))

    def reply(self) -> AgentReply:
        """The settled task (or message) as an AgentReply; a failed or rejected task raises ToolError."""
        if self.message is not None:
            return message_reply(self.message)
        task = self.task
        message = task.status.message if task.status.HasField("message") else None
        if message is None or not message.parts:
            from a2a.types import Role

            agents = [m for m in task.history if m.role == Role.ROLE_AGENT]  # its last word, if the status has none
            message = agents[-1] if agents else None
        parts = message.parts if message is not None else []
        text = _texts(parts)
        if self.state in ("failed", "rejected"):
            said = text[:TEXT_LIMIT] or "(no text)"
            raise ToolError(f"A2A agent {self.agent!r}: the task {self.state}: {said}")
        return AgentReply(
            text=text,
            data=_data(parts),
            artifacts=[AgentArtifact(name=a.name, text=_texts(a.parts), data=_data(a.parts)) for a in task.artifacts],
            state=self.state,  # type: ignore[typeddict-item]  # settled: one of the Literal's
            task_id=task.id or None,
            context_id=task.context_id or None,
        )
