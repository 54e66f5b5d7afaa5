"""Deep recursion in C code is a RecursionError the program can catch, as in CPython.

CPython 3.14 guards C recursion by the address of a local on the guest's
shadow stack, but each C frame also takes native wasm stack, which ended
first: the program died ("the program exhausted the sandbox stack"). The
guest now gives CPython a shadow-stack budget the native stack can hold
(ptc.wasm_threads), so these raise RecursionError, caught in the program.
"""

import pytest

NESTED = "x = []\nfor _ in range(100_000):\n    x = [x]\n"
CAUGHT = "\ntry:\n    {expr}\nexcept RecursionError as exc:\n    result = ['RecursionError', str(exc)]\n"

CASES = {
    "repr": NESTED + CAUGHT.format(expr="repr(x)"),
    "str-of-dicts": "d = {}\nfor _ in range(100_000):\n    d = {'a': d}\n" + CAUGHT.format(expr="str(d)"),
    "compare": NESTED + "y = []\nfor _ in range(100_000):\n    y = [y]\n" + CAUGHT.format(expr="x == y"),
    "compare-self-referencing": "x = []\nx.append(x)\ny = []\ny.append(y)\n" + CAUGHT.format(expr="x == y"),
    "json-loads": "import json\n" + CAUGHT.format(expr="json.loads('[' * 100_000 + ']' * 100_000)"),
    "json-dumps": "import json\n" + NESTED + CAUGHT.format(expr="json.dumps(x)"),
    "deepcopy": "import copy\n" + NESTED + CAUGHT.format(expr="copy.deepcopy(x)"),
    "pickle": "import pickle\n" + NESTED + CAUGHT.format(expr="pickle.dumps(x)"),
}


@pytest.mark.parametrize("code", CASES.values(), ids=CASES.keys())
async def test_deep_recursion_in_c_is_a_catchable_recursion_error(run, code):
    r = await run(code)
    assert r.error is None, r.error
    assert r.result[0] == "RecursionError"


async def test_ordinary_depths_still_work(run):
    r = await run(
        "import json, copy\n"
        "x = []\nfor _ in range(3000):\n    x = [x]\n"
        "result = [len(repr(x)), len(json.dumps(json.loads('[' * 2000 + ']' * 2000))), x == copy.copy(x)]"
    )
    assert r.error is None and r.result == [6002, 4000, True]


async def test_a_program_may_leave_a_deeply_nested_value_behind(run):
    # Freeing it at the end recursed in C (list_dealloc) past the stack: a finished program failed.
    r = await run(NESTED + "y = {'deep': x}\nresult = 'done'")
    assert r.error is None and r.result == "done"


async def test_a_result_too_deep_to_repr_still_comes_back(run):
    r = await run(NESTED + "result = x")
    assert r.error is None and r.result_is_repr
    assert r.result == "<list object (its repr raised RecursionError)>"
