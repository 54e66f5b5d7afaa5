"""Approvals against the real guest and real tools: a call that waits for a decision, suspends, resumes.

Every tool counts its calls at the handler: exactly once is the point.
"""

import asyncio
import base64
import json
from collections import Counter

import msgpack
import pytest

from ptc import (
    DEFER,
    ApprovalDecision,
    ApprovalRequest,
    JournalError,
    Limits,
    Policy,
    ProgrammaticToolExecutor,
    ToolCatalog,
)

CALLS: Counter[str] = Counter()
LIMITS = Limits(timeout=5)


def bank() -> ToolCatalog:
    catalog = ToolCatalog(source="approvals-test")

    @catalog.tool(domain="bank")
    async def balance(account: str) -> float:
        """The balance of an account (needs no approval)."""
        CALLS["balance"] += 1
        return 100.0

    @catalog.tool(domain="bank", policy=Policy(requires_approval=True))
    def transfer(to: str, amount: float) -> str:
        """Move money (needs an approval)."""
        CALLS["transfer"] += 1
        return f"sent {amount:g} to {to}"

    @catalog.tool(domain="bank")
    async def slow_report(seconds: float) -> str:
        """A report that takes a while (needs no approval)."""
        CALLS["slow_report"] += 1
        await asyncio.sleep(seconds)
        return "report"

    @catalog.tool(domain="bank", policy=Policy(requires_approval=True, inline=True))
    def close_account(account: str) -> str:
        """Close an account (needs an approval; inline, which an approval overrides)."""
        CALLS["close_account"] += 1
        return f"closed {account}"

    return catalog


PROGRAM = """
from tools.bank import balance, transfer
from tools import ToolApprovalDenied
b = await balance(account="A")
try:
    sent = await transfer(to="bob", amount=b / 2)
except ToolApprovalDenied as e:
    sent = "denied: " + str(e)
result = [b, sent]
"""


def executor(**options) -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(bank(), limits=LIMITS, tenant_id="approvals-tests", **options)


@pytest.fixture(autouse=True)
def _counts():
    CALLS.clear()


async def test_an_approved_call_runs_once_and_its_record_says_who_approved():
    asked: list[ApprovalRequest] = []
    audits = []

    def approve(request: ApprovalRequest):
        asked.append(request)
        return ApprovalDecision(approved=True, by="alice")

    ex = executor(on_approval=approve, on_audit=audits.append)
    events = []
    ex.on_event(lambda event: events.append(event) if event.kind == "approval" else None)
    result = await ex.execute(PROGRAM)
    assert result.status == "completed", result.error
    assert result.result == [100.0, "sent 50 to bob"]
    assert CALLS == {"balance": 1, "transfer": 1}
    [request] = asked
    assert request.tool == "transfer" and request.domain == "bank"
    assert request.parameters == {"to": "bob", "amount": 50.0}
    assert request.call_id == "tool_call_2" and request.execution_id == result.execution_id
    assert request.tenant_id == "approvals-tests" and request.session_id is None
    assert request.line == 'sent = await transfer(to="bob", amount=b / 2)'
    record = result.tool_calls[1]
    assert record.approval == "approved" and record.approved_by == "alice"
    assert result.tool_calls[0].approval is None
    assert audits[0].tool_calls[1]["approval"] == "approved" and audits[0].tool_calls[1]["approved_by"] == "alice"
    [event] = events
    assert event.tool == "transfer" and event.state == "approved" and event.text == "alice"
    assert "approval" not in audits[0].tool_calls[0]


@pytest.mark.parametrize("answer, reason", [(False, "denied"), ("over the limit", "over the limit")])
async def test_a_denied_call_raises_tool_approval_denied_with_the_reason_and_runs_nothing(answer, reason):
    async def decide(request):
        await asyncio.sleep(0)
        return answer

    result = await executor(on_approval=decide).execute(PROGRAM)
    assert result.status == "completed"
    assert result.result == [100.0, f"denied: transfer: denied: {reason}"]
    assert CALLS == {"balance": 1}
    assert result.tool_calls[1].approval == "denied"
    assert result.tool_calls[1].error.type == "ToolApprovalDenied"


async def test_no_decision_within_the_approval_timeout_denies_the_call():
    async def slow(request):
        await asyncio.sleep(5)
        return True

    result = await executor(on_approval=slow, approval_timeout=0.2).execute(PROGRAM)
    assert result.result == [100.0, "denied: transfer: no decision within 0.2 s"]
    assert result.tool_calls[1].approval == "timed_out" and CALLS == {"balance": 1}


async def test_waiting_for_a_decision_does_not_count_against_the_programs_timeout():
    def slow(request):  # a sync callback: on a thread, not the loop
        import time

        time.sleep(1.2)
        return True

    ex = executor(on_approval=slow)
    result = await ex.execute(PROGRAM, limits=Limits(timeout=1.0))
    assert result.status == "completed", result.error
    assert result.result == [100.0, "sent 50 to bob"]
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 2: pass"
    result = await ex.execute(spin, limits=Limits(timeout=1.0))  # running time still counts
    assert result.status == "failed" and result.error.kind == "timeout"


async def test_an_executor_wide_policy_makes_every_call_wait_for_a_decision():
    asked = []
    ex = executor(policy=Policy(requires_approval=True), on_approval=lambda r: asked.append(r.tool) or True)
    result = await ex.execute(PROGRAM)
    assert result.result == [100.0, "sent 50 to bob"] and asked == ["balance", "transfer"]
    assert [c.approval for c in result.tool_calls] == ["approved", "approved"]


async def test_an_inline_tool_that_needs_approval_waits_for_it_on_the_loop():
    result = await executor(on_approval=lambda r: True).execute(
        "from tools.bank import close_account\nawait close_account(account='A')"
    )
    assert result.result == "closed A" and result.tool_calls[0].approval == "approved"


async def _suspended(ex, program=PROGRAM):
    result = await ex.execute(program)
    assert result.status == "suspended", result.error
    assert result.error is None and not result.ok and result.journal is not None
    return result


@pytest.mark.parametrize("callback", [None, lambda request: DEFER])
async def test_without_a_decision_the_execution_suspends_and_resume_runs_no_earlier_tool_again(callback):
    ex = executor(on_approval=callback)
    result = await _suspended(ex)
    [pending] = result.pending_approvals
    assert pending.call_id == "tool_call_2" and pending.parameters == {"to": "bob", "amount": 50.0}
    assert CALLS == {"balance": 1}
    assert result.tool_calls[1].error is None and result.tool_calls[1].approval is None
    resumed = await ex.resume(result.journal, decisions={"tool_call_2": True})
    assert resumed.status == "completed", resumed.error
    assert resumed.result == [100.0, "sent 50 to bob"]
    assert CALLS == {"balance": 1, "transfer": 1}  # balance answered from the journal
    [record] = resumed.tool_calls
    assert record.caller.tool_id == "tool_call_2" and record.approval == "approved"
    assert resumed.execution_id == result.execution_id == pending.execution_id  # one execution, suspended and resumed


async def test_resume_in_another_executor_from_json_with_a_denial():
    result = await _suspended(executor())
    text = result.journal.model_dump_json()
    resumed = await executor().resume(text, decisions={"tool_call_2": "not today"})
    assert resumed.result == [100.0, "denied: transfer: denied: not today"]
    assert CALLS == {"balance": 1}
    assert resumed.tool_calls[0].approval == "denied"


async def test_calls_under_gather_suspend_together_and_resume_with_both_decisions():
    program = (
        "import asyncio, random\nfrom tools.bank import balance, transfer\nfrom tools import ToolApprovalDenied\n"
        "r = random.random()\n"
        "async def safe(c):\n"
        "    try:\n        return await c\n    except ToolApprovalDenied as e:\n        return 'no'\n"
        "got = await asyncio.gather(balance(account='A'), safe(transfer(to='a', amount=1)), "
        "safe(transfer(to='b', amount=2)))\n"
        "after = await balance(account='B')\nresult = [r, got, after]"
    )
    ex = executor()
    result = await _suspended(ex, program)
    assert sorted(p.call_id for p in result.pending_approvals) == ["tool_call_2", "tool_call_3"]
    resumed = await ex.resume(result.journal, {"tool_call_2": False, "tool_call_3": True})
    assert resumed.status == "completed", resumed.error
    r, got, after = resumed.result
    assert got == [100.0, "no", "sent 2 to b"] and after == 100.0
    assert CALLS == {"balance": 2, "transfer": 1}
    assert [c.caller.tool_id for c in resumed.tool_calls] == ["tool_call_2", "tool_call_3", "tool_call_4"]


async def test_a_call_left_undecided_suspends_again_and_that_journal_resumes():
    program = PROGRAM + "t2 = await transfer(to='carol', amount=1)\nresult.append(t2)\n"
    ex = executor()
    first = await _suspended(ex, program)
    second = await ex.resume(first.journal, {"tool_call_2": True})
    assert second.status == "suspended" and [p.call_id for p in second.pending_approvals] == ["tool_call_3"]
    third = await ex.resume(second.journal, {"tool_call_3": True})
    assert third.result == [100.0, "sent 50 to bob", "sent 1 to carol"]
    assert CALLS == {"balance": 1, "transfer": 2}


async def test_resume_refuses_unknown_and_decided_ids_and_a_second_resume():
    ex = executor()
    result = await _suspended(ex)
    with pytest.raises(ValueError, match="tool_call_9"):
        await ex.resume(result.journal, {"tool_call_9": True})
    with pytest.raises(ValueError, match="tool_call_1.*decided before"):
        await ex.resume(result.journal, {"tool_call_1": True})
    with pytest.raises(ValueError, match="not True, False"):
        await ex.resume(result.journal, {"tool_call_2": 3})
    assert (await ex.resume(result.journal, {"tool_call_2": True})).status == "completed"
    with pytest.raises(JournalError, match="already resumed"):
        await ex.resume(result.journal, {"tool_call_2": True})
    assert CALLS == {"balance": 1, "transfer": 1}


def _edit(journal, edit) -> str:
    data = json.loads(journal.model_dump_json())
    edit(data)
    return json.dumps(data)


def _balance_reply(data):
    frame = msgpack.packb({"ok": 1_000_000.0}).decode("latin-1")
    data["cells"][0]["calls"][0]["reply"] = base64.b64encode(frame.encode("latin-1")).decode()


async def test_a_tampered_journal_is_only_ever_an_answer_to_the_program():
    ex = executor()
    result = await _suspended(ex)
    # an edited reply is what the program sees, nothing more: the transfer's parameters follow it
    resumed = await ex.resume(_edit(result.journal, _balance_reply), {"tool_call_2": True})
    assert resumed.status == "failed" and resumed.error.type == "ReplayDivergedError"  # the transfer's amount changed
    assert resumed.journal is None
    assert CALLS == {"balance": 1}
    # a completed call marked pending, or a session's journal, is refused before anything runs
    with pytest.raises(JournalError):
        await ex.resume(_edit(result.journal, lambda d: d["pending"].append({"call_id": "tool_call_1", "index": 0})))
    with pytest.raises(JournalError):
        await ex.resume(_edit(result.journal, lambda d: d.update(kind="session")))
    with pytest.raises(JournalError):
        await ex.resume(_edit(result.journal, lambda d: d.update(pending=[])))
    assert CALLS["balance"] == 1


def _rerun_balance(data):
    """The first call (balance, which ran) made to look pending: its reply and its wait taken out."""
    cell = data["cells"][0]
    cell["calls"][0]["reply"] = None
    cell["waits"] = [[i for i in wait if i != 0] for wait in cell["waits"]]
    data["pending"].append({"call_id": "tool_call_1", "index": 0})


async def test_a_journal_edited_to_run_a_finished_call_again_runs_nothing_twice():
    ex = executor()
    result = await _suspended(ex)
    try:
        resumed = await ex.resume(_edit(result.journal, _rerun_balance), {"tool_call_1": True, "tool_call_2": True})
    except JournalError:
        resumed = None
    assert resumed is None or resumed.status in ("completed", "failed")
    assert CALLS["balance"] == 1 and CALLS["transfer"] <= 1


async def test_status_is_on_every_result():
    audits = []
    ex = executor(on_audit=audits.append)
    assert (await ex.execute("1 + 1")).status == "completed"
    assert (await ex.execute("1 / 0")).status == "failed"
    assert (await ex.execute(PROGRAM)).status == "suspended"
    assert [a.outcome for a in audits] == ["ok", "runtime_error", "suspended"]


async def test_in_a_session_a_call_without_a_decision_suspends_the_cell():  # more: test_session_approvals.py
    async with executor().session() as session:
        result = await session.execute(PROGRAM)
        assert result.status == "suspended" and session.suspended
        assert [p.call_id for p in result.pending_approvals] == ["tool_call_2"]
        resumed = await session.resume({"tool_call_2": False})
    assert resumed.status == "completed" and resumed.result[1].startswith("denied: ")
    assert CALLS == {"balance": 1}


async def test_in_a_session_the_callback_decides_and_the_request_names_the_session():
    asked = []
    async with executor(on_approval=lambda r: asked.append(r) or True).session() as session:
        result = await session.execute(PROGRAM)
    assert result.result == [100.0, "sent 50 to bob"]
    assert asked[0].session_id == session.id and asked[0].line.startswith("sent = await transfer(")


async def test_a_tool_running_beside_an_approval_still_counts_against_the_timeout():
    async def slow(request):
        await asyncio.sleep(1.5)
        return True

    program = (
        "import asyncio\nfrom tools.bank import transfer, slow_report\n"
        "await asyncio.gather(transfer(to='a', amount=1), slow_report(seconds=3))"
    )
    result = await executor(on_approval=slow).execute(program, limits=Limits(timeout=1.0))
    assert result.status == "failed" and result.error.kind == "timeout"


async def test_cancelling_an_execution_stops_its_wait_for_a_decision():
    async def never(request):
        await asyncio.sleep(60)

    ex = executor(on_approval=never)
    task = asyncio.create_task(ex.execute(PROGRAM))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert CALLS == {"balance": 1}


async def test_a_callback_that_raises_denies_the_call():
    def broken(request):
        raise RuntimeError("the approvals service is down")

    result = await executor(on_approval=broken).execute(PROGRAM)
    assert result.result == [100.0, "denied: transfer: denied: the approval callback failed"]
    assert CALLS == {"balance": 1}


async def test_a_decision_given_to_resume_may_say_who_made_it():
    ex = executor()
    result = await _suspended(ex)
    resumed = await ex.resume(result.journal, {"tool_call_2": ApprovalDecision(approved=True, by="ops")})
    assert resumed.tool_calls[0].approval == "approved" and resumed.tool_calls[0].approved_by == "ops"


async def test_only_a_suspended_executions_journal_resumes():
    ex = executor()
    completed = await ex.execute("from tools.bank import balance\nawait balance(account='A')")
    with pytest.raises(JournalError, match="not a suspended"):
        await ex.resume(completed.journal, {})
    session = executor().session()
    await session.execute("x = 1")
    with pytest.raises(JournalError):
        await ex.resume(session.journal(), {})
    await session.aclose()


async def test_a_call_the_program_gave_up_on_before_the_suspension_never_runs_on_resume():
    program = (
        "import asyncio\nfrom tools.bank import transfer, slow_report\n"
        "async def impatient():\n"
        "    try:\n        return await asyncio.wait_for(transfer(to='a', amount=1), 0.05)\n"
        "    except TimeoutError:\n        return 'gave up'\n"
        "got = await asyncio.gather(impatient(), slow_report(seconds=0.3))\n"
        "later = await transfer(to='c', amount=3)\nresult = [got, later]"
    )
    ex = executor()
    result = await _suspended(ex, program)
    decisions = {p.call_id: True for p in result.pending_approvals}
    assert list(decisions) == ["tool_call_3"]
    assert result.tool_calls[0].error.type == "CancelledError" and result.tool_calls[2].error is None
    resumed = await ex.resume(result.journal, decisions)
    assert resumed.result == [["gave up", "report"], "sent 3 to c"], resumed.error
    assert CALLS == {"slow_report": 1, "transfer": 1}


@pytest.mark.parametrize("line, shown", [("x" * 100_000, "x" * 500), (5, None), (["a"], None)])
async def test_the_line_a_frame_claims_is_only_ever_bounded_text(line, shown):
    asked = []
    program = (
        "import sys\nhost = sys.modules['wit_world.imports.host']\nimport _ptc_codec\n"
        f"frame = {{'tool': 'transfer', 'args': {{'to': 'x', 'amount': 1}}, 'key': None, 'line': {line!r}}}\n"
        "raw = _ptc_codec.unpack(host.call(_ptc_codec.pack(frame).decode('latin-1')).encode('latin-1'))"
    )
    result = await executor(on_approval=lambda r: asked.append(r) or True).execute(program + "\nraw")
    assert result.result == {"ok": "sent 1 to x"}, result.error
    assert asked[0].line == shown
