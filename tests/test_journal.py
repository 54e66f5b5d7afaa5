"""The journal: deterministic replay with exactly-once tool calls, and journals that are hostile input.

Every test counts calls at the handler: a replay must run no tool again."""

import asyncio
import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest
from session_tools import CALLS, shop

from ptc import (
    Journal,
    JournalError,
    Limits,
    ProgrammaticToolExecutor,
    ReplayDivergedError,
)
from ptc.journal import JOURNAL_VERSION

HERE = Path(__file__).resolve().parent
LIMITS = Limits(timeout=5)
CELLS = [
    "from tools.shop import price, stock, label\nimport random, uuid, time, os, secrets, asyncio, datetime",
    "r = random.random()\nu = uuid.uuid4().hex\nb = os.urandom(8).hex()\ns = secrets.token_hex(4)",
    "t = time.time()\nm = time.monotonic()\nd = datetime.datetime.now().isoformat()",
    "first = await price(sku='A1')\nin_stock = await stock(sku='A1')",
    "order = []\nasync def get(sku):\n    p = await price(sku=sku)\n    order.append(sku)\n    return p\n"
    "both = await asyncio.gather(get('B2'), get('A1'))\nawait asyncio.sleep(0.01)\nname = await label(sku='B2')",
    "import sys\nhost = sys.modules['wit_world.imports.host']\nimport _ptc_codec\n"
    "raw = _ptc_codec.unpack(host.call(_ptc_codec.pack({'tool': 'label', 'args': {'sku': 'C3'}, 'key': None})"
    ".decode('latin-1')).encode('latin-1'))['ok']",
    "try:\n    await price(sku=1)\nexcept Exception as exc:\n    refused = type(exc).__name__",
]
STATE = "r, u, b, s, t, m, d, first, in_stock, both, order, name, raw, refused"


@pytest.fixture(scope="module")
def executor() -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(shop("journal-test"), limits=LIMITS, tenant_id="journal-tests")


async def _session_with_state(executor):
    session = executor.session()
    for code in CELLS:
        r = await session.execute(code)
        assert r.error is None, r.error
    state = (await session.execute(STATE)).result
    return session, state


async def test_a_journal_restores_the_same_state_and_runs_no_tool(executor):
    session, state = await _session_with_state(executor)
    assert state[9] == [12.0, 3.5] and state[10] == ["A1", "B2"]  # gather: A1 came back first
    assert state[12] == "<C3>" and state[13] == "ToolValidationError"
    text = session.journal().model_dump_json()
    await session.aclose()
    before = CALLS.copy()
    restored = await executor.restore_session(text)
    assert restored.id == session.id and restored.cells == session.cells == len(CELLS) + 1
    r = await restored.execute(STATE)
    assert r.error is None and r.result == state  # seeds, clocks, replies and their order: all as they were
    assert CALLS == before  # exactly once: nothing ran again
    later = await restored.execute("time.monotonic() >= m, random.random() != r")
    assert later.result == [True, True]  # the clock goes on from the journal's, never backwards
    await restored.aclose()


async def test_a_journal_round_trips_as_json(executor):
    r = await executor.execute(
        "import random\nfrom tools.shop import stock\nx = [random.random(), await stock(sku='A1')]"
    )
    journal = r.journal
    assert isinstance(journal, Journal) and journal.version == JOURNAL_VERSION and journal.session_id is None
    assert len(journal.cells) == 1 and journal.cells[0].code.startswith("import random")
    assert [call.tool for call in journal.cells[0].calls] == ["stock"]
    again = Journal.model_validate_json(journal.model_dump_json())
    assert again == journal
    assert "journal" not in r.model_dump() and '"journal":' not in r.model_dump_json()  # seeds and replies stay out


async def test_a_one_shot_journal_is_not_a_sessions(executor):
    r = await executor.execute(
        "import random\nfrom tools.shop import stock\nx = [random.random(), await stock(sku='A1')]"
    )
    assert r.journal.kind == "execution"
    before = CALLS.copy()
    with pytest.raises(JournalError, match="one execution's"):
        await executor.restore_session(r.journal)
    assert CALLS == before


def _edit(text: str, edit) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.replace("sku='A1')\nin_stock", "sku='B2')\nin_stock"), "recorded price"),  # other parameters
        (lambda c: c.replace("await price(sku='A1')\nin_stock", "await label(sku='A1')\nin_stock"), "recorded price"),
        (lambda c: c + "\nextra = await stock(sku='A1')", "records 2 calls, the replay made another"),
    ],
    ids=["other-parameters", "another-tool", "more-calls"],
)
async def test_a_replay_that_departs_from_its_journal_stops_before_any_tool_runs(executor, change, message):
    session, _ = await _session_with_state(executor)
    text = session.journal().model_dump_json()
    await session.aclose()

    def edit(data: dict) -> None:
        data["cells"][3]["code"] = change(data["cells"][3]["code"])

    before = CALLS.copy()
    with pytest.raises(ReplayDivergedError, match=message) as caught:
        await executor.restore_session(_edit(text, edit))
    assert caught.value.cell == 3 and caught.value.call in (0, 2) and caught.value.asked
    assert CALLS == before  # nothing real ran
    assert (await executor.execute("1 + 1")).result == 2  # the host is unharmed


async def test_a_tampered_reply_is_only_ever_an_answer_to_the_program(executor):
    session = executor.session()
    await session.execute("from tools.shop import price\np = await price(sku='A1')")
    text = session.journal().model_dump_json()
    await session.aclose()

    def tamper(frame: bytes):
        def edit(data: dict) -> None:
            data["cells"][0]["calls"][0]["reply"] = base64.b64encode(frame).decode()

        return _edit(text, edit)

    before = CALLS.copy()
    edited = await executor.restore_session(tamper(msgpack.packb({"ok": 99.0})), session_id="edited")
    assert (await edited.execute("p")).result == 99.0  # the answer the program is given, nothing more
    await edited.aclose()
    # garbage, an error in place of a result, a reply past the frame limit: the program sees a failed call,
    # so the cell does not end as recorded
    for frame in (b"\xc1garbage", msgpack.packb({"error": {"type": "ToolError", "message": "x"}}), b"\x00" * 2048):
        limits = LIMITS.model_copy(update={"max_frame_bytes": 1024})
        with pytest.raises(ReplayDivergedError, match="ended with ToolError, recorded no error"):
            await executor.restore_session(tamper(frame), limits=limits)
    assert CALLS == before


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda text: text[: len(text) // 2], "malformed or truncated"),
        (lambda text: "not json at all", "malformed or truncated"),
        (lambda text: _edit(text, lambda d: d.update(version=JOURNAL_VERSION + 1)), "format 2"),
        (lambda text: _edit(text, lambda d: d.update(version=JOURNAL_VERSION + 1, cells="new")), "format 2"),
        (lambda text: _edit(text, lambda d: d.update(version=0)), "not one ptc ever wrote"),
        (lambda text: _edit(text, lambda d: d.update(catalog="0" * 64)), "another tool catalog"),
        (lambda text: _edit(text, lambda d: d.update(guest="other")), "another sandbox guest"),
        (lambda text: _edit(text, lambda d: d["cells"][0].update(seed="xyz")), "malformed"),
        (lambda text: _edit(text, lambda d: d["cells"][0].update(clocks=[-1])), "malformed"),
        (lambda text: _edit(text, lambda d: d["cells"][0].update(waits=[[5]])), "does not hold"),
        (lambda text: _edit(text, lambda d: d["cells"][0]["calls"][0].update(reply="%%%")), "base64"),
        (lambda text: _edit(text, lambda d: d["cells"].append(dict(d["cells"][0]))), "must be in order"),
        (lambda text: _edit(text, lambda d: d.update(cells_run=0)), "cells ran"),
        (lambda text: _edit(text, lambda d: d.update(surprise=1)), "malformed"),
    ],
)
async def test_a_bad_journal_is_refused_and_nothing_runs(executor, tamper, message):
    session = executor.session()
    await session.execute("from tools.shop import price\nimport asyncio\np = await asyncio.gather(price(sku='A1'))")
    text = session.journal().model_dump_json()
    await session.aclose()
    before = CALLS.copy()
    with pytest.raises(JournalError, match=message):
        await executor.restore_session(tamper(text))
    assert CALLS == before


async def test_journals_are_bounded(executor):
    r = await executor.execute("x = 'y' * 10")
    text = r.journal.model_dump_json()
    with pytest.raises(JournalError, match="more than max_journal_bytes"):
        await executor.restore_session(text, max_journal_bytes=100)
    with pytest.raises(JournalError, match="larger than max_journal_bytes"):
        await executor.restore_session(r.journal, max_journal_bytes=100)
    with pytest.raises(JournalError, match="not int"):
        await executor.restore_session(12)  # type: ignore[arg-type]


async def test_a_journal_from_another_catalog_is_refused(executor):
    async with executor.session() as session:
        await session.execute("1")
    other = ProgrammaticToolExecutor(shop("another"), limits=LIMITS)
    other.catalog.add_tool(other.catalog.get("price").model_copy(update={"name": "price2"}), lambda p: 1)
    with pytest.raises(JournalError, match="another tool catalog"):
        await other.restore_session(session.journal())
    await other.aclose()


async def test_restore_in_another_process_with_the_same_catalog(executor, tmp_path):
    session, state = await _session_with_state(executor)
    path = tmp_path / "journal.json"
    path.write_text(session.journal().model_dump_json())
    await session.aclose()
    child = textwrap.dedent(
        f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(HERE)!r})
        from session_tools import CALLS, shop
        from test_journal import LIMITS, STATE
        from ptc import ProgrammaticToolExecutor

        async def main():
            executor = ProgrammaticToolExecutor(shop("journal-test"), limits=LIMITS, tenant_id="journal-tests")
            session = await executor.restore_session(open({str(path)!r}).read())
            r = await session.execute(STATE)
            print(json.dumps({{"state": r.result, "calls": sum(CALLS.values())}}))
            await executor.aclose()

        asyncio.run(main())
        """
    )
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"state": state, "calls": 0}


def test_the_guest_sees_no_clock_or_randomness_the_journal_does_not_hold():
    from types import SimpleNamespace

    from ptc import engine

    runtime = engine.get_runtime()
    names = engine._wasi_names(runtime.component, runtime.engine)
    assert names.random.startswith("wasi:random/random@") and names.wall_clock.startswith("wasi:clocks/wall-clock@")
    imports = {**dict.fromkeys(runtime.component.type.imports(runtime.engine)), "wasi:random/insecure@0.2.9": None}
    component = SimpleNamespace(type=SimpleNamespace(imports=lambda _: imports))
    with pytest.raises(RuntimeError, match="cannot record or replay"):
        engine._wasi_names(component, runtime.engine)  # a guest built to import more is refused, not run
