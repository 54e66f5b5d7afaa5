"""A session's cell whose call waits for a decision suspends; `session.resume(decisions)` goes on with it.

Against the real guest and real tools; every tool counts its calls at the handler: exactly once is the point.
"""

import asyncio
import json

import pytest
from test_approvals import CALLS, bank  # the same bank: balance (no approval), transfer (needs one)

from ptc import (
    DEFER,
    ApprovalDecision,
    JournalError,
    Limits,
    ProgrammaticToolExecutor,
    Quota,
    SessionClosedError,
    SessionSuspendedError,
)

LIMITS = Limits(timeout=10)


def executor(**options) -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(bank(), limits=LIMITS, tenant_id="session-approvals-tests", **options)


SETUP = "from tools.bank import balance, transfer\nfrom tools import ToolApprovalDenied\nnotes = ['cell 0']\n"
# The cell that suspends: a tool call and a variable before the call that waits, a handler for a denial after.
CELL = """
import random
before = random.random()
b = await balance(account="A")
notes.append("cell 1 before")
try:
    sent = await transfer(to="bob", amount=b / 2)
except ToolApprovalDenied as e:
    sent = "denied: " + str(e)
notes.append("cell 1 after")
[b, sent]
"""


@pytest.fixture(autouse=True)
def _counts():
    CALLS.clear()


async def _suspended_session(ex: ProgrammaticToolExecutor, **options):
    session = ex.session(**options)
    first = await session.execute(SETUP)
    assert first.status == "completed", first.error
    result = await session.execute(CELL)
    assert result.status == "suspended", result.error
    assert result.error is None and not result.ok and result.cell == 1 and result.session_id == session.id
    assert not result.session_restored
    return session, result


@pytest.mark.parametrize("callback", [None, lambda request: DEFER])
async def test_a_cell_suspends_and_resumes_approved_the_tool_runs_once_and_the_state_is_the_cells(callback):
    ex = executor(on_approval=callback)
    session, result = await _suspended_session(ex)
    [pending] = result.pending_approvals
    assert pending.call_id == "tool_call_2" and pending.tool == "transfer"
    assert pending.parameters == {"to": "bob", "amount": 50.0} and pending.session_id == session.id
    assert pending.execution_id == result.execution_id
    assert session.suspended and session.pending_approvals == [pending]
    assert CALLS == {"balance": 1}
    journal = result.journal
    assert journal.kind == "session" and [c.index for c in journal.cells] == [0, 1]
    assert [p.call_id for p in journal.pending] == ["tool_call_2"] and journal.resume_id is not None
    assert session.journal() == journal

    resumed = await session.resume({"tool_call_2": True})
    assert resumed.status == "completed", resumed.error
    assert resumed.cell == 1 and resumed.session_id == session.id and resumed.execution_id == result.execution_id
    assert resumed.result == [100.0, "sent 50 to bob"]
    assert CALLS == {"balance": 1, "transfer": 1}  # balance answered from the journal, transfer run once
    [record] = resumed.tool_calls
    assert record.caller.tool_id == "tool_call_2" and record.approval == "approved"
    assert not session.suspended and session.pending_approvals == [] and session.cells == 2

    # the state is as if the cell had run through: cell 0's, the suspended cell's earlier lines and its later ones
    after = await session.execute("[notes, b, sent, before == before]")
    assert after.status == "completed", after.error
    assert after.cell == 2
    assert after.result == [["cell 0", "cell 1 before", "cell 1 after"], 100.0, "sent 50 to bob", True]
    assert CALLS == {"balance": 1, "transfer": 1}
    assert [c.index for c in session.journal().cells] == [0, 1, 2] and session.journal().pending == []
    assert '"approvals"' not in session.journal().model_dump_json()  # written as before, with nothing pending
    assert '"approvals"' in journal.model_dump_json()  # the suspended one carries its requests
    await session.aclose()


async def test_a_denied_call_raises_tool_approval_denied_in_the_cell_and_the_session_goes_on():
    session, _ = await _suspended_session(executor())
    resumed = await session.resume({"tool_call_2": "not today"})
    assert resumed.status == "completed", resumed.error
    assert resumed.result == [100.0, "denied: transfer: denied: not today"]
    assert resumed.tool_calls[0].approval == "denied"
    assert CALLS == {"balance": 1}
    more = await session.execute("b2 = await balance(account='B')\n[notes[-1], sent[:6], b2]")
    assert more.result == ["cell 1 after", "denied", 100.0] and more.cell == 2
    assert CALLS == {"balance": 2}
    await session.aclose()


async def test_while_suspended_execute_raises_and_runs_nothing_and_the_journal_stays():
    session, result = await _suspended_session(executor())
    for _ in range(2):
        with pytest.raises(SessionSuspendedError, match="tool_call_2") as raised:
            await session.execute("notes.append('must not run')")
        assert raised.value.call_ids == ["tool_call_2"]
    with pytest.raises(SessionSuspendedError):
        await asyncio.to_thread(session.execute_sync, "notes.append('must not run')")
    assert session.cells == 2 and session.journal() == result.journal
    resumed = await session.resume({"tool_call_2": True})
    assert resumed.status == "completed"
    check = await session.execute("notes")
    assert check.result == ["cell 0", "cell 1 before", "cell 1 after"]
    await session.aclose()


async def test_a_cell_queued_behind_the_one_that_suspends_is_refused_not_run():
    ex = executor()
    session = ex.session()
    await session.execute(SETUP)
    suspending = asyncio.create_task(session.execute(CELL))
    queued = asyncio.create_task(session.execute("notes.append('queued')"))
    assert (await suspending).status == "suspended"
    with pytest.raises(SessionSuspendedError):
        await queued
    resumed = await session.resume({"tool_call_2": True})
    assert resumed.result == [100.0, "sent 50 to bob"]
    assert (await session.execute("notes[-1]")).result == "cell 1 after"
    await session.aclose()


async def test_a_cell_sent_right_after_a_resume_runs_after_it_in_order():
    session, _ = await _suspended_session(executor())
    resuming = asyncio.create_task(session.resume({"tool_call_2": True}))
    await asyncio.sleep(0)  # the resume has taken its turn
    after = await session.execute("notes[-1]")  # not refused: it waits for the resume, as cells wait for cells
    assert (await resuming).status == "completed"
    assert after.status == "completed" and after.result == "cell 1 after" and after.cell == 2
    await session.aclose()


async def test_a_suspended_cell_whose_journal_is_past_max_journal_bytes_closes_the_session():
    from ptc.journal import size

    probe = executor().session()
    await probe.execute(SETUP)
    room = size(probe.journal()) + 300  # cell 0 fits; the suspended cell (code, two calls) does not
    await probe.aclose()
    session = executor().session(max_journal_bytes=room)
    await session.execute(SETUP)
    result = await session.execute(CELL)
    assert result.status == "suspended" and result.journal is None
    assert session.closed and "max_journal_bytes" in session.closed_reason
    with pytest.raises(SessionClosedError):
        await session.resume({"tool_call_2": True})
    assert CALLS == {"balance": 1}


async def test_a_bad_decision_set_is_a_value_error_naming_the_id_and_consumes_nothing():
    session, _ = await _suspended_session(executor())
    with pytest.raises(ValueError, match="tool_call_9"):
        await session.resume({"tool_call_9": True})
    with pytest.raises(ValueError, match="tool_call_1.*decided before"):
        await session.resume({"tool_call_1": True})
    with pytest.raises(ValueError, match="not True, False"):
        await session.resume({"tool_call_2": 3})
    assert session.suspended and CALLS == {"balance": 1}
    resumed = await session.resume({"tool_call_2": ApprovalDecision(approved=True, by="alice")})
    assert resumed.status == "completed" and resumed.tool_calls[0].approved_by == "alice"
    await session.aclose()


async def test_resuming_twice_is_a_journal_error_the_second_time():
    session, _ = await _suspended_session(executor())
    assert (await session.resume({"tool_call_2": True})).status == "completed"
    with pytest.raises(JournalError, match="not suspended"):
        await session.resume({"tool_call_2": True})
    assert CALLS == {"balance": 1, "transfer": 1}
    await session.aclose()


async def test_two_resumes_at_once_run_the_cell_once():
    session, _ = await _suspended_session(executor())
    first, second = await asyncio.gather(
        session.resume({"tool_call_2": True}), session.resume({"tool_call_2": True}), return_exceptions=True
    )
    assert first.status == "completed" and isinstance(second, JournalError)
    assert CALLS == {"balance": 1, "transfer": 1}
    await session.aclose()


async def test_a_cell_suspends_twice_in_a_row_and_each_suspension_resumes():
    session = executor().session()
    await session.execute(SETUP)
    cell = "a = await transfer(to='a', amount=1)\nnotes.append(a)\nb = await transfer(to='b', amount=2)\n[a, b]"
    first = await session.execute(cell)
    assert first.status == "suspended" and [p.call_id for p in first.pending_approvals] == ["tool_call_1"]
    second = await session.resume({"tool_call_1": True})
    assert second.status == "suspended" and second.cell == 1
    assert [p.call_id for p in second.pending_approvals] == ["tool_call_2"]
    assert session.pending_approvals == second.pending_approvals and CALLS == {"transfer": 1}
    assert second.journal.resume_id != first.journal.resume_id
    third = await session.resume({"tool_call_2": True})
    assert third.status == "completed", third.error
    assert third.result == ["sent 1 to a", "sent 2 to b"] and CALLS == {"transfer": 2}
    assert (await session.execute("notes")).result == ["cell 0", "sent 1 to a"]
    await session.aclose()


async def test_a_cell_that_fails_after_the_resume_leaves_the_session_usable():
    session = executor().session()
    await session.execute(SETUP)
    result = await session.execute("x = 1\nawait transfer(to='a', amount=1)\nraise KeyError('after')")
    assert result.status == "suspended"
    resumed = await session.resume({"tool_call_1": True})
    assert resumed.status == "failed" and resumed.error.type == "KeyError"
    assert (await session.execute("[x, notes]")).result == [1, ["cell 0"]]
    assert CALLS == {"transfer": 1}
    await session.aclose()


async def test_suspended_in_one_executor_resumed_in_another_from_the_journals_json():
    session, result = await _suspended_session(executor())
    text = result.journal.model_dump_json()
    await session.aclose()

    other = executor()
    restored = await other.restore_session(text)
    assert restored.suspended and restored.cells == 2 and CALLS == {"balance": 1}  # cells replayed, no tool ran
    [pending] = restored.pending_approvals
    assert pending.call_id == "tool_call_2" and pending.parameters == {"to": "bob", "amount": 50.0}
    with pytest.raises(SessionSuspendedError):
        await restored.execute("1")
    resumed = await restored.resume({"tool_call_2": True})
    assert resumed.status == "completed", resumed.error
    assert resumed.result == [100.0, "sent 50 to bob"] and resumed.cell == 1
    assert CALLS == {"balance": 1, "transfer": 1}
    after = await restored.execute("notes")
    assert after.result == ["cell 0", "cell 1 before", "cell 1 after"] and after.cell == 2
    await restored.aclose()

    again = await executor().restore_session(text)  # the same suspended journal, restored a second time
    assert again.suspended
    with pytest.raises(JournalError, match="already resumed"):
        await again.resume({"tool_call_2": True})
    assert CALLS == {"balance": 1, "transfer": 1}
    await again.aclose()


async def test_a_tampered_suspended_cell_diverges_on_resume_runs_no_tool_and_closes_the_session():
    _, result = await _suspended_session(executor())
    data = result.journal.model_dump(mode="json")
    data["cells"][1]["code"] = data["cells"][1]["code"].replace('account="A"', 'account="B"')
    restored = await executor().restore_session(json.dumps(data))  # cells 0..n-1 are untouched: they replay
    assert restored.suspended
    resumed = await restored.resume({"tool_call_2": True})
    assert resumed.status == "failed" and resumed.error.type == "ReplayDivergedError"
    assert restored.closed and "departed from the journal" in restored.closed_reason
    assert CALLS == {"balance": 1}  # neither the changed balance call nor the transfer ran


async def test_a_journal_naming_an_answered_call_pending_is_refused_before_anything_runs():
    _, result = await _suspended_session(executor())
    data = result.journal.model_dump(mode="json")
    data["pending"][0]["index"] = 0  # the balance call, which has its reply
    with pytest.raises(JournalError, match="not a call without a reply"):
        await executor().restore_session(json.dumps(data))
    assert CALLS == {"balance": 1}


async def test_a_resumed_cell_stopped_by_a_limit_ends_the_suspension_with_the_state_before_it():
    session = executor().session(limits=Limits(timeout=1))
    await session.execute(SETUP)
    result = await session.execute("notes.append('lost')\nawait transfer(to='a', amount=1)\nwhile True: pass")
    assert result.status == "suspended"
    resumed = await session.resume({"tool_call_1": True})
    assert resumed.status == "failed" and resumed.error.kind == "timeout" and resumed.session_restored
    assert not session.suspended and CALLS == {"transfer": 1}
    assert (await session.execute("notes")).result == ["cell 0"]
    await session.aclose()


async def test_a_suspended_journal_restored_under_another_id_names_it():
    session, result = await _suspended_session(executor())
    await session.aclose()
    restored = await executor().restore_session(result.journal.model_dump_json(), session_id="moved")
    assert restored.id == "moved" and restored.journal().session_id == "moved" and "suspended" in repr(restored)
    resumed = await restored.resume({"tool_call_2": True})
    assert resumed.session_id == "moved" and resumed.status == "completed"
    await restored.aclose()


async def test_a_suspended_first_cell_resumes_too_and_resume_sync_works():
    ex = executor()
    session = ex.session()
    result = await session.execute(
        "from tools.bank import transfer\nimport random\nr = random.random()\n"
        "t = await transfer(to='x', amount=3)\n[r, t]"
    )
    assert result.status == "suspended" and result.cell == 0
    resumed = await asyncio.to_thread(session.resume_sync, {"tool_call_1": True})
    assert resumed.status == "completed", resumed.error
    r, t = resumed.result
    assert t == "sent 3 to x" and (await session.execute("r")).result == r
    assert CALLS == {"transfer": 1}
    await session.aclose()


async def test_a_session_journal_does_not_resume_as_an_execution_and_close_while_suspended():
    ex = executor()
    session, result = await _suspended_session(ex)
    with pytest.raises(JournalError, match="session's"):
        await ex.resume(result.journal, {"tool_call_2": True})
    await session.aclose()
    assert session.closed and not session.suspended
    with pytest.raises(SessionClosedError):
        await session.resume({"tool_call_2": True})
    assert CALLS == {"balance": 1}


async def test_a_suspended_session_counts_against_max_sessions_and_its_idle_timeout_closes_it():
    from ptc.errors import OverCapacityError

    ex = ProgrammaticToolExecutor(
        bank(), limits=LIMITS, tenant_id="session-approvals-quota", quota=Quota(max_sessions=1)
    )
    session, _ = await _suspended_session(ex, idle_timeout=0.5)
    with pytest.raises(OverCapacityError):
        ex.session()
    for _ in range(100):
        if session.closed:
            break
        await asyncio.sleep(0.05)
    assert session.closed and "idle" in session.closed_reason
    replacement = ex.session()  # its slot is free again
    await replacement.aclose()


async def test_a_session_made_not_suspendable_denies_a_call_without_a_decision():
    session = executor().session(suspendable=False)  # as `ptc serve` and the REPL make theirs: nothing resumes
    await session.execute(SETUP)
    result = await session.execute(CELL)
    assert result.status == "completed" and not session.suspended
    assert result.result == [100.0, "denied: transfer: no decision (this call cannot wait for one)"]
    assert CALLS == {"balance": 1}
    await session.aclose()


@pytest.fixture
async def workers_executor():
    ex = executor(workers=1)
    yield ex
    await ex.aclose()


async def test_workers_a_pinned_session_cell_suspends_and_resumes(workers_executor):
    session, result = await _suspended_session(workers_executor)
    assert session.suspended and [p.call_id for p in session.pending_approvals] == ["tool_call_2"]
    with pytest.raises(SessionSuspendedError):
        await session.execute("1")
    resumed = await session.resume({"tool_call_2": True})
    assert resumed.status == "completed", resumed.error
    assert resumed.result == [100.0, "sent 50 to bob"] and CALLS == {"balance": 1, "transfer": 1}
    assert resumed.tool_calls[0].caller.tool_id == "tool_call_2" and resumed.tool_calls[0].approval == "approved"
    after = await session.execute("notes")
    assert after.result == ["cell 0", "cell 1 before", "cell 1 after"] and after.cell == 2
    assert CALLS == {"balance": 1, "transfer": 1}
    await session.aclose()


async def test_workers_a_first_cell_suspends_twice_and_a_denial_reaches_the_cell(workers_executor):
    session = workers_executor.session()
    cell = (
        "from tools.bank import transfer\nfrom tools import ToolApprovalDenied\n"
        "a = await transfer(to='a', amount=1)\n"
        "try:\n    b = await transfer(to='b', amount=2)\nexcept ToolApprovalDenied:\n    b = 'no'\n[a, b]"
    )
    first = await session.execute(cell)
    assert first.status == "suspended" and first.cell == 0
    second = await session.resume({"tool_call_1": True})
    assert second.status == "suspended" and [p.call_id for p in second.pending_approvals] == ["tool_call_2"]
    third = await session.resume({"tool_call_2": False})
    assert third.status == "completed", third.error
    assert third.result == ["sent 1 to a", "no"] and CALLS == {"transfer": 1}
    assert (await session.execute("[a, b]")).result == ["sent 1 to a", "no"]
    await session.aclose()


async def test_suspended_in_one_process_resumed_in_a_worker_process(workers_executor):
    session, result = await _suspended_session(executor())
    text = result.journal.model_dump_json()
    await session.aclose()
    restored = await workers_executor.restore_session(text)
    assert restored.suspended and CALLS == {"balance": 1}
    resumed = await restored.resume({"tool_call_2": True})
    assert resumed.result == [100.0, "sent 50 to bob"] and CALLS == {"balance": 1, "transfer": 1}
    assert (await restored.execute("notes[-1]")).result == "cell 1 after"
    await restored.aclose()


async def test_a_cancelled_resume_ends_the_suspension_and_the_session_goes_on_from_before_the_cell():
    session = executor().session()
    await session.execute(SETUP)
    result = await session.execute("notes.append('lost')\nawait transfer(to='a', amount=1)\nwhile True: pass")
    assert result.status == "suspended"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.resume({"tool_call_1": True}), 1.0)
    after = await session.execute("notes")  # waits for the cancelled cell's work to end, then runs
    assert after.status == "completed" and after.result == ["cell 0"] and after.session_restored is False
    assert not session.suspended and CALLS == {"transfer": 1}
    await session.aclose()


async def test_the_audit_says_suspended_for_the_cell_and_completed_for_its_resume():
    audits = []
    session, _ = await _suspended_session(executor(on_audit=audits.append))
    await session.resume({"tool_call_2": True})
    assert [a.outcome for a in audits] == ["ok", "suspended", "ok"]
    assert audits[2].tool_calls[0]["approval"] == "approved"
    await session.aclose()


async def test_a_suspended_first_cell_restores_in_another_executor_and_resumes():
    session = executor().session()
    result = await session.execute("from tools.bank import transfer\nt = await transfer(to='x', amount=3)\nt")
    assert result.status == "suspended" and result.cell == 0
    await session.aclose()
    restored = await executor().restore_session(result.journal.model_dump_json())
    assert restored.suspended and restored.cells == 1
    resumed = await restored.resume({"tool_call_1": True})
    assert resumed.status == "completed" and resumed.result == "sent 3 to x" and resumed.cell == 0
    assert (await restored.execute("t")).result == "sent 3 to x" and CALLS == {"transfer": 1}
    await restored.aclose()
