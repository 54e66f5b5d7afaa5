"""Nothing of one execution reaches the next: globals, modules, patched stdlib, random state.

Each case is (plant, probe): a fresh execution runs the probe for a baseline,
the plant tampers with the interpreter, then the probe runs again in the same
executor and must see exactly the baseline (and, where given, an expected
value).
"""

from __future__ import annotations

from typing import Any

import pytest

from ptc import ProgrammaticToolExecutor

from .conftest import RunCase
from .support import describe, ok

_NO_VALUE = object()  # no fixed expectation: the probe must only see what it saw before the plant

CASES = [
    pytest.param("secret = 42", "'secret' in globals()", False, id="globals"),
    pytest.param(
        "import builtins\nbuiltins.planted = 1",
        "import builtins\nhasattr(builtins, 'planted')",
        False,
        id="builtins-attribute",
    ),
    pytest.param(
        "import sys, types\nsys.modules['planted'] = types.ModuleType('planted')",
        "import sys\n'planted' in sys.modules",
        False,
        id="module-planted-in-sys-modules",
    ),
    pytest.param(
        "import sys, types\nfake = types.ModuleType('json')\nfake.dumps = lambda *a, **k: 'forged'\nsys.modules['json'] = fake",
        "import json\njson.dumps([1])",
        "[1]",
        id="module-replaced-in-sys-modules",
    ),
    pytest.param(
        "import json\njson.dumps = lambda *a, **k: 'patched'",
        "import json\njson.dumps([1])",
        "[1]",
        id="json-dumps-patched",
    ),
    pytest.param(
        "import builtins\nbuiltins.print = lambda *a, **k: None",
        "print('visible')\nresult = 'printed'",
        "printed",
        id="builtins-print-patched",
    ),
    pytest.param("import builtins\nbuiltins.len = lambda x: 0", "len('abc')", 3, id="builtins-len-patched"),
    pytest.param(
        "import sys\nsys.setrecursionlimit(50)", "import sys\nsys.getrecursionlimit()", _NO_VALUE, id="recursion-limit"
    ),
    pytest.param(
        "import sys\nsys.set_int_max_str_digits(0)",
        "import sys\nsys.get_int_max_str_digits()",
        _NO_VALUE,
        id="int-max-str-digits",
    ),
    pytest.param("import os\nos.environ['PLANTED'] = '1'", "import os\ndict(os.environ)", {}, id="environ"),
    pytest.param(
        "import sys\nsys.path.insert(0, '/planted')", "import sys\n'/planted' in sys.path", False, id="sys-path"
    ),
    pytest.param(
        "import sys\nclass F:\n    def find_spec(self, *a): return None\nsys.meta_path.insert(0, F())",
        "import sys\n[type(f).__name__ for f in sys.meta_path]",
        _NO_VALUE,
        id="sys-meta-path",
    ),
    pytest.param(
        "import sys\nsys.settrace(lambda *a: None)", "import sys\nsys.gettrace() is None", True, id="sys-settrace"
    ),
    pytest.param(
        "import sys\nsys.setprofile(lambda *a: None)", "import sys\nsys.getprofile() is None", True, id="sys-setprofile"
    ),
    pytest.param(
        "import sys, io\nsys.stdout = io.StringIO()\nsys.__stdout__ = io.StringIO()",
        "print('visible')\nresult = 'printed'",
        "printed",
        id="sys-stdout-replaced",
    ),
    pytest.param(
        "import time\ntime.sleep = lambda s: None",
        "import time\nt = time.monotonic()\ntime.sleep(0.05)\ntime.monotonic() - t >= 0.04",
        True,
        id="time-sleep-patched",
    ),
    pytest.param(
        "import warnings\nwarnings.simplefilter('error')",
        "import warnings\nwarnings.warn('w')\nresult = 'warned'",
        "warned",
        id="warnings-filter",
    ),
    pytest.param(
        "import codecs\ncodecs.register(lambda name: codecs.lookup('utf-8') if name == 'planted' else None)",
        "import codecs\ntry:\n    codecs.lookup('planted')\n    result = True\nexcept LookupError:\n    result = False",
        False,
        id="codecs-registry",
    ),
    pytest.param(
        "import gc\ngc.callbacks.append(lambda *a: print('leak'))",
        "import gc\ngc.collect()\nlen(gc.callbacks)",
        _NO_VALUE,
        id="gc-callbacks",
    ),
    pytest.param("import atexit\natexit.register(print, 'leaked at exit')", "result = 'probe'", "probe", id="atexit"),
    pytest.param(
        "import decimal\ndecimal.getcontext().prec = 3",
        "import decimal\nstr(decimal.Decimal(1) / decimal.Decimal(3))",
        _NO_VALUE,
        id="decimal-context",
    ),
    pytest.param(
        "import asyncio\nasyncio.set_event_loop_policy(None)",
        "import asyncio\nawait asyncio.sleep(0)\ntype(asyncio.get_running_loop()).__name__",
        _NO_VALUE,
        id="asyncio-loop-policy",
    ),
    pytest.param(
        "import tools\ntools.ToolError = None",
        "from tools import ToolError\nToolError is not None and issubclass(ToolError, Exception)",
        True,
        id="tools-package-poisoned",
    ),
    pytest.param(
        "import linecache\nlinecache.cache['<program>'] = (1, None, ['PLANTED SOURCE\\n'], '<program>')\nlinecache.getline = lambda *a, **k: 'PLANTED'",
        "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    result = 'PLANTED' in traceback.format_exc()",
        False,
        id="linecache-poisoned",
    ),
    pytest.param(
        "import random\nrandom.seed(1234)\nrandom.random = lambda: 0.5",
        "import random\n[random.random() != random.Random(1234).random(), type(random.random).__name__]",
        [True, "builtin_function_or_method"],
        id="random-seeded-and-patched",
    ),
    pytest.param(
        "import sys\nsys.modules['_ptc_run'].run = None\nsys.modules['_ptc_tools'].call_tool = None",
        "from tools.shop import echo\nawait echo(value='still routed')",
        "still routed",
        id="runtime-modules-patched",
    ),
]


@pytest.mark.parametrize("plant, probe, expected", CASES)
async def test_nothing_survives_an_execution(
    executor: ProgrammaticToolExecutor, run_case: RunCase, plant: str, probe: str, expected: Any
) -> None:
    baseline = await executor.execute(probe)
    assert baseline.error is None, describe(baseline)
    if expected is not _NO_VALUE:
        assert baseline.result == expected, describe(baseline)
    await executor.execute(plant)  # its own outcome is not the point (see test_boundary's sabotage cases)
    after = await run_case(executor, probe, ok())
    assert after.result == baseline.result and after.output == baseline.output, (
        f"the plant changed the next execution: before {describe(baseline)}; after {describe(after)}"
    )


# Each value must differ in every execution: the snapshot is shared, its random state must not be.
UNPREDICTABLE = [
    pytest.param("import random\nrandom.random()", id="random-random"),
    pytest.param("import random\nrandom.getrandbits(64)", id="random-getrandbits"),
    pytest.param("import random\nrandom.Random().random()", id="random-new-instance"),
    pytest.param("import random\nrandom.SystemRandom().random()", id="random-system-random"),
    pytest.param("import random\nrandom.sample(range(10**9), 3)", id="random-sample"),
    pytest.param("import uuid\nstr(uuid.uuid4())", id="uuid4"),
    pytest.param("import secrets\nsecrets.token_hex()", id="secrets-token-hex"),
    pytest.param("import os\nos.urandom(8).hex()", id="os-urandom"),
    pytest.param("import tempfile\ntempfile._RandomNameSequence().__next__()", id="tempfile-names"),
]


@pytest.mark.parametrize("code", UNPREDICTABLE)
async def test_randomness_differs_between_executions(
    executor: ProgrammaticToolExecutor, run_case: RunCase, code: str
) -> None:
    values = [(await run_case(executor, code, ok())).result for _ in range(5)]
    assert len({repr(v) for v in values}) == 5, f"repeated across executions: {values}"


async def test_string_hashes_are_fixed_by_the_snapshot(executor: ProgrammaticToolExecutor, run_case: RunCase) -> None:
    # Documented behaviour, not an isolation leak: the hash secret (PYTHONHASHSEED) is
    # fixed when the snapshot is built, so every execution (and every tenant) gets the
    # same str/bytes hashes and the same set iteration order. A program can therefore
    # precompute colliding keys (hash flooding) for dicts it builds itself; that only
    # burns its own fuel. Nothing of another execution can be learned from it.
    code = "[hash('some string'), hash(b'some bytes'), list({'a', 'b', 'c', 'd', 'e'})]"
    values = [(await run_case(executor, code, ok())).result for _ in range(3)]
    assert values[0] == values[1] == values[2]
