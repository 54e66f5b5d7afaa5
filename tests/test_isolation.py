"""Nothing of the host reaches the program, and nothing survives an execution."""

import socket
import threading

import pytest


async def test_no_environment(run):
    r = await run("import os\nresult = dict(os.environ)")
    assert r.result == {}


@pytest.mark.parametrize("path", ["/etc/passwd", "/", ".", "/proc/self/environ"])
async def test_no_file_system(run, path):
    r = await run(f"open({path!r}).read()")
    assert r.error.kind == "runtime_error"
    assert r.error.type in ("FileNotFoundError", "PermissionError", "IsADirectoryError", "OSError")


async def test_cannot_write_files(run):
    r = await run("open('/tmp/ptc-escape', 'w').write('x')")
    assert r.error.kind == "runtime_error"


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    yield server.getsockname()[1], accepted
    thread.join()
    server.close()


@pytest.mark.parametrize(
    "code",
    [
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)",
    ],
)
async def test_no_network_to_a_real_listener(run, listener, code):
    port, accepted = listener
    r = await run(code.format(port=port))
    assert r.error is not None and r.error.kind == "runtime_error"
    assert accepted == []


@pytest.mark.parametrize(
    "code, error_type",
    [
        ("import threading\nthreading.Thread(target=print).start()", "RuntimeError"),
        ("import subprocess\nsubprocess.run(['ls'])", "OSError"),
        ("import os\nos.fork()", "AttributeError"),
        ("import os\nos.system('ls')", "AttributeError"),
    ],
)
async def test_no_threads_or_processes(run, code, error_type):
    r = await run(code)
    assert r.error.kind == "runtime_error" and r.error.type == error_type


async def test_globals_and_modules_do_not_survive(run):
    await run("import json, sys\nsecret = 42\njson.dumps = None\nsys.modules['planted'] = 1")
    r = await run("import json, sys\nresult = ['secret' in globals(), json.dumps is None, 'planted' in sys.modules]")
    assert r.result == [False, False, False]


async def test_random_differs_between_executions(run):
    values = {(await run("import random\nrandom.random()")).result for _ in range(5)}
    assert len(values) == 5


async def test_uuid4_differs_between_executions(run):
    values = {(await run("import uuid\nstr(uuid.uuid4())")).result for _ in range(3)}
    assert len(values) == 3
