"""What a program gives back: value, result, output, errors and tracebacks."""


async def test_last_expression_is_the_value(run):
    r = await run("x = 20\nx * 2 + 2")
    assert r.error is None
    assert r.result == 42


async def test_result_variable_wins_over_last_expression(run):
    r = await run("result = {'a': [1, 2.5, None, True], 'b': b'\\x00'}\n'ignored'")
    assert r.result == {"a": [1, 2.5, None, True], "b": b"\x00"}


async def test_tuples_become_lists_and_int_keys_survive(run):
    r = await run("result = {1: (1, 2), 'k': [(3,)]}")
    assert r.result == {1: [1, 2], "k": [[3]]}


async def test_non_plain_last_expression_falls_back_to_repr(run):
    r = await run("{1, 2}")
    assert r.error is None and r.result == "{1, 2}" and r.result_is_repr


async def test_non_plain_result_comes_back_as_its_repr(run):
    # Models write `result = ...` constantly: a value that is not plain data never fails the program.
    r = await run("class Order:\n    def __repr__(self):\n        return 'Order(7)'\nresult = Order()")
    assert r.error is None and r.result == "Order(7)" and r.result_is_repr
    r = await run("x = []\nx.append(x)\nresult = x")
    assert r.error is None and r.result == "[[...]]" and r.result_is_repr


async def test_plain_results_are_not_reprs(run):
    r = await run("result = 'text'")
    assert r.result == "text" and not r.result_is_repr


async def test_the_program_file_is_named_as_in_its_tracebacks(run):
    r = await run("__file__")
    assert r.error is None and r.result == "<program>"


async def test_memory_error_says_which_limit_it_met(run):
    r = await run("x = bytearray(300 << 20)", memory_bytes=128 << 20)
    assert r.error.kind == "memory_limit" and r.error.type == "MemoryError"
    assert str(128 << 20) in r.error.message


async def test_stdout_and_stderr_are_captured_in_order(run):
    r = await run("import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')")
    assert r.output == "one\ntwo\nthree\n"
    assert r.stdout == "one\nthree\n"
    assert r.stderr == "two\n"
    assert not r.output_truncated


async def test_unicode_output_round_trips(run):
    r = await run("print('héllo ✓ 😀')")
    assert r.output == "héllo ✓ 😀\n"


async def test_syntax_error(run):
    r = await run("def f(:\n    pass")
    assert r.error.kind == "syntax_error"
    assert r.error.type == "SyntaxError"
    assert "<program>" in r.error.traceback and "def f(:" in r.error.traceback
    assert "ast.py" not in r.error.traceback


async def test_runtime_error_traceback_shows_only_program_frames(run):
    r = await run("def inner():\n    return 1 / 0\n\ndef outer():\n    return inner()\n\nouter()")
    assert r.error.kind == "runtime_error"
    assert r.error.type == "ZeroDivisionError"
    assert r.error.message == "division by zero"
    tb = r.error.traceback
    assert 'File "<program>", line 7' in tb and 'File "<program>", line 2, in inner' in tb
    assert "return 1 / 0" in tb
    for runtime_file in ("_ptc_run", "ptc_guest", "/work/", "site-packages", "base_events"):
        assert runtime_file not in tb


async def test_traceback_through_asyncio_shows_program_frames(run):
    r = await run("import asyncio\nasync def f():\n    raise KeyError('k')\nawait asyncio.gather(f())")
    assert r.error.type == "KeyError"
    assert "line 3, in f" in r.error.traceback
    assert "base_events" not in r.error.traceback and "_ptc" not in r.error.traceback


async def test_exception_the_program_catches_is_not_an_error(run):
    r = await run("try:\n    {}['x']\nexcept KeyError:\n    result = 'caught'")
    assert r.error is None and r.result == "caught"


async def test_sys_exit(run):
    assert (await run("import sys; sys.exit(0)")).error is None
    r = await run("import sys; sys.exit(3)")
    assert r.error.kind == "runtime_error" and r.error.type == "SystemExit"
    assert (await run("import os; os._exit(0)")).error is None
    assert (await run("import os; os._exit(2)")).error.type == "SystemExit"


async def test_result_metadata(run):
    r = await run("x = 1")
    assert len(r.execution_id) == 36 and r.execution_id.startswith("ptc_")  # the walkthrough's ptc_<hex>
    assert r.execution_time > 0
    assert r.tool_calls == []
    assert r.fuel_used and r.fuel_used > 0


def test_execute_sync(executor):
    r = executor.execute_sync("result = sum(range(10))")
    assert r.result == 45
