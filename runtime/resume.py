"""Resuming a suspended execution: which decisions a journal can take, and one resume per journal.

A suspended execution's journal (`result.journal`) names the calls it waits
on (`Journal.pending`) and carries a `resume_id`. `decisions` must name only
those calls (another id is a ValueError naming it: unknown, or decided
already); a call left out (or given DEFER) is asked again when the resumed
program reaches it. A journal is resumed once: its resume id is claimed
first, and a second resume of it in this process is a JournalError. (Across
processes, the caller who keeps journals must drop one once resumed: the id
is there to key that.)
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping

from ptc.approvals import DEFER, ApprovalDecision, decision_of
from ptc.errors import JournalError
from ptc.journal import Journal

MAX_REMEMBERED = 100_000  # resume ids kept per process (the oldest go first)
_CALL_ID = re.compile(r"tool_call_([1-9][0-9]{0,9})")


def decisions_for(journal: Journal, decisions: Mapping[str, object] | None) -> dict[str, ApprovalDecision]:
    """The decisions, checked against the journal's pending calls (ValueError naming a call id it cannot take)."""
    pending = {p.call_id for p in journal.pending}
    checked: dict[str, ApprovalDecision] = {}
    for call_id, answer in (decisions or {}).items():
        if call_id not in pending:
            number = _CALL_ID.fullmatch(call_id) if isinstance(call_id, str) else None
            if number is not None and int(number.group(1)) <= journal.records:
                raise ValueError(
                    f"call {call_id!r} is not waiting for a decision: it was decided before the suspension"
                )
            raise ValueError(f"call {str(call_id)[:100]!r} is not a call of this journal waiting for a decision")
        if answer is not DEFER and not isinstance(answer, (bool, str, ApprovalDecision)):
            raise ValueError(f"the decision for {call_id!r} is a {type(answer).__name__}, not True, False or a reason")
        decision = decision_of(answer)
        if decision is not None:
            checked[call_id] = decision
    return checked


class Resumes:
    """The resume ids already used in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: OrderedDict[str, None] = OrderedDict()

    def claim(self, journal: Journal) -> None:
        """Mark the journal resumed, or JournalError if it was already."""
        resume_id = journal.resume_id
        if resume_id is None:
            raise JournalError("the journal is not a suspended execution's: it has no resume id")
        with self._lock:
            if resume_id in self._used:
                raise JournalError(f"the journal was already resumed (resume id {resume_id})")
            self._used[resume_id] = None
            while len(self._used) > MAX_REMEMBERED:
                self._used.popitem(last=False)


resumes = Resumes()
