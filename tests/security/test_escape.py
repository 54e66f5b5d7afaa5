"""Escape attempts: the host's file system, environment, network, processes, threads, native code.

Each case is a hostile program and the outcome it must get. Whatever the
outcome, nothing of the host may reach it (the host secrets fixture: the real
/etc/passwd's first line, a canary file and a canary environment variable
that exist only on the host), the host's files stay untouched, the
listener on the host's loopback is never contacted, and the same executor
runs the next program normally.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from ptc import ExecutionResult, ProgrammaticToolExecutor

from .conftest import REPO_DIR, Listener, RunCase
from .support import FS_ERRORS, Expect, fails, ok

WRITE_TARGET = Path(tempfile.gettempdir()) / f"ptc-sandbox-escape-{uuid.uuid4().hex}"
HOST_NAME = socket.gethostname()
HOST_NEEDLES = [
    str(REPO_DIR),
    os.path.dirname(sys.executable),
    *([os.path.expanduser("~")] if len(os.path.expanduser("~")) > 1 else []),
    "PTC_SECURITY_CANARY",
    "hostcalls",
    "pytest-of-",
]

PROC_ERRORS = frozenset(
    {"AttributeError", "OSError", "NotImplementedError", "ModuleNotFoundError", "ImportError", "RuntimeError"}
)
NET_ERRORS = frozenset({"PermissionError", "OSError", "gaierror", "ConnectionRefusedError", "URLError"})
THREAD_ERRORS = frozenset({"RuntimeError"})
# Frames a program may walk to: its own, the guest runtime's, the guest's stdlib. Never the host's.
GUEST_FRAME = re.compile(r"^(<program>|<stdlib>/|/0/|/1/|/bundled/|/python/|tools/|<frozen )")
REFUSED = re.compile(r"^[A-Za-z_.]*([Ee]rror|Exception|Exit|Interrupt)$")

# A prelude for programs that try many things: each attempt records its value or the exception's name.
ATTEMPTS = """
out = {}
def attempt(name, fn):
    try:
        out[name] = fn()
    except BaseException as e:
        out[name] = type(e).__name__
"""


def all_refused(r: ExecutionResult) -> bool:
    """Every attempt raised, or got only empty sandbox data (no environment, no files)."""
    attempts = r.result.get("attempts", r.result) if isinstance(r.result, dict) else None
    if not isinstance(attempts, dict) or not attempts:
        return False
    return all(
        value in (None, {}, [], "", b"") or (isinstance(value, str) and REFUSED.match(value))
        for value in attempts.values()
    )


def guest_frames_only(r: ExecutionResult) -> bool:
    frames = r.result.get("frames") if isinstance(r.result, dict) else None
    return bool(frames) and all(GUEST_FRAME.match(name) for name in frames) and all_refused(r)


def refused(kind_types: frozenset[str]) -> Expect:
    return fails("runtime_error", kind_types)


FS = refused(FS_ERRORS)

FILE_SYSTEM = [
    pytest.param("open('/etc/passwd').read()", FS, id="fs-open-etc-passwd"),
    pytest.param("open('$CANARY_FILE').read()", FS, id="fs-open-canary-file"),
    pytest.param("open('$REPO/README.md').read()", FS, id="fs-open-repo-file"),
    pytest.param("open('README.md').read()", FS, id="fs-open-relative"),
    pytest.param("open('../../../../../../etc/passwd').read()", FS, id="fs-open-parent-traversal"),
    pytest.param("open('/proc/self/environ').read()", FS, id="fs-open-proc-self-environ"),
    pytest.param("open('/proc/self/mem', 'rb').read(16)", FS, id="fs-open-proc-self-mem"),
    pytest.param("open('/dev/mem', 'rb')", FS, id="fs-open-dev-mem"),
    pytest.param("open(3).read()", refused(frozenset({"OSError"})), id="fs-open-inherited-fd"),
    pytest.param("open(0).read()", ok(""), id="fs-stdin-is-empty"),
    pytest.param("import io\nio.open('/etc/passwd').read()", FS, id="fs-io-open"),
    pytest.param("import io\nio.FileIO('/etc/passwd').read()", FS, id="fs-io-fileio"),
    pytest.param("import os\nos.read(os.open('/etc/passwd', os.O_RDONLY), 100)", FS, id="fs-os-open"),
    pytest.param("import os\nos.listdir('/')", FS, id="fs-os-listdir-root"),
    pytest.param("import os\nos.listdir('.')", FS, id="fs-os-listdir-cwd"),
    pytest.param("import os\nos.listdir('$REPO')", FS, id="fs-os-listdir-repo"),
    pytest.param("import os\nlist(os.scandir('/'))", FS, id="fs-os-scandir"),
    pytest.param("import os\nlist(os.walk('/'))", ok([]), id="fs-os-walk-sees-nothing"),
    pytest.param("import glob\nglob.glob('/etc/*')", ok([]), id="fs-glob-sees-nothing"),
    pytest.param("import os\nos.stat('/etc/passwd')", FS, id="fs-os-stat"),
    pytest.param("import os\nos.stat('$CANARY_FILE')", FS, id="fs-os-stat-canary"),
    pytest.param("import os\nos.chdir('/')", FS, id="fs-os-chdir"),
    pytest.param("import pathlib\npathlib.Path('/etc/passwd').read_text()", FS, id="fs-pathlib-read-text"),
    pytest.param("import pathlib\nlist(pathlib.Path('/').iterdir())", FS, id="fs-pathlib-iterdir"),
    pytest.param("open('$WRITE_TARGET', 'w').write('escaped')", FS, id="fs-write-host-tmp"),
    pytest.param("import os\nos.mkdir('$WRITE_TARGET')", FS, id="fs-mkdir-host-tmp"),
    pytest.param("import os\nos.remove('$CANARY_FILE')", FS, id="fs-remove-canary"),
    pytest.param("import os\nos.rename('$CANARY_FILE', '$WRITE_TARGET')", FS, id="fs-rename-canary"),
    pytest.param("import os\nos.truncate('$CANARY_FILE', 0)", FS, id="fs-truncate-canary"),
    pytest.param("import os\nos.symlink('/etc/passwd', 'link')", FS, id="fs-symlink"),
    pytest.param("import shutil\nshutil.copy('/etc/passwd', '$WRITE_TARGET')", FS, id="fs-shutil-copy"),
    pytest.param("import tempfile\ntempfile.mkstemp()", FS, id="fs-tempfile"),
    pytest.param(
        "import sqlite3\nsqlite3.connect('/etc/passwd').execute('select 1')",
        refused(frozenset({"OperationalError"})),
        id="fs-sqlite-host-file",
    ),
    pytest.param(
        "import sqlite3\nsqlite3.connect(':memory:').execute(\"select load_extension('/lib/x86_64-linux-gnu/libc.so.6')\")",
        refused(frozenset({"OperationalError", "AttributeError"})),
        id="fs-sqlite-load-extension",
    ),
    pytest.param(
        "import zipimport\nzipimport.zipimporter('/etc/passwd')",
        refused(frozenset({"ZipImportError"})),
        id="fs-zipimport",
    ),
    pytest.param("import linecache\nlinecache.getlines('/etc/passwd')", ok([]), id="fs-linecache"),
    pytest.param(
        "import importlib.machinery\nimportlib.machinery.SourceFileLoader('m', '/etc/passwd').get_data('/etc/passwd')",
        FS,
        id="fs-source-file-loader",
    ),
    pytest.param(
        "import importlib.machinery\nimportlib.machinery.PathFinder.find_spec('os', ['$REPO', '/usr/lib/python3'])",
        ok(None),
        id="fs-path-finder-finds-nothing",
    ),
]

ENVIRONMENT = [
    pytest.param("import os\ndict(os.environ)", ok({}), id="env-os-environ"),
    pytest.param("import os\ndict(os.environb)", ok({}), id="env-os-environb"),
    pytest.param("import posix\ndict(posix.environ)", ok({}), id="env-posix-environ"),
    pytest.param(
        "import os\n[os.getenv(k) for k in ('HOME', 'PATH', 'USER', 'PTC_SECURITY_CANARY')]",
        ok([None, None, None, None]),
        id="env-os-getenv",
    ),
    pytest.param("import sys\n[sys.argv, sys.orig_argv]", ok([[], []]), id="env-argv"),
    pytest.param("import os\nos.path.expanduser('~')", ok("~"), id="env-expanduser"),
    pytest.param("import pathlib\npathlib.Path.home()", refused(frozenset({"RuntimeError"})), id="env-pathlib-home"),
    pytest.param("import getpass\ngetpass.getuser()", refused(frozenset({"OSError", "KeyError"})), id="env-getpass"),
    pytest.param("import socket\nsocket.gethostname()", ok(check=lambda r: r.result != HOST_NAME), id="env-hostname"),
    pytest.param("import os\nlist(os.uname())", ok(check=lambda r: HOST_NAME not in r.result), id="env-uname"),
]

NETWORK = [
    pytest.param(
        "import socket\nsocket.create_connection(('127.0.0.1', $PORT), timeout=1)",
        refused(NET_ERRORS),
        id="net-socket-create-connection",
    ),
    pytest.param(
        "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', $PORT))",
        refused(NET_ERRORS),
        id="net-raw-socket",
    ),
    pytest.param(
        "import socket\nsocket.socket().connect_ex(('127.0.0.1', $PORT))", refused(NET_ERRORS), id="net-connect-ex"
    ),
    pytest.param(
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:$PORT/', timeout=1)",
        refused(NET_ERRORS),
        id="net-urllib-request",
    ),
    pytest.param(
        "import http.client\nc = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=1)\nc.request('GET', '/')",
        refused(NET_ERRORS),
        id="net-http-client",
    ),
    pytest.param("import smtplib\nsmtplib.SMTP('127.0.0.1', $PORT, timeout=1)", refused(NET_ERRORS), id="net-smtplib"),
    pytest.param(
        "import asyncio\nawait asyncio.open_connection('127.0.0.1', $PORT)",
        refused(NET_ERRORS),
        id="net-asyncio-open-connection",
    ),
    pytest.param(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', $UDP_PORT))",
        refused(NET_ERRORS),
        id="net-udp-sendto",
    ),
    pytest.param(
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()", refused(NET_ERRORS), id="net-listen"
    ),
    pytest.param("import socket\nsocket.socketpair()", refused(NET_ERRORS), id="net-socketpair"),
    pytest.param("import socket\nsocket.getaddrinfo('localhost', 80)", refused(NET_ERRORS), id="net-dns"),
]

PROCESSES = [
    pytest.param("import subprocess\nsubprocess.run(['ls'])", refused(PROC_ERRORS), id="proc-subprocess-run"),
    pytest.param(
        "import subprocess\nsubprocess.check_output('cat /etc/passwd', shell=True)",
        refused(PROC_ERRORS),
        id="proc-subprocess-shell",
    ),
    pytest.param("import os\nos.system('cat /etc/passwd')", refused(PROC_ERRORS), id="proc-os-system"),
    pytest.param("import os\nos.popen('cat /etc/passwd').read()", refused(PROC_ERRORS), id="proc-os-popen"),
    pytest.param("import os\nos.fork()", refused(PROC_ERRORS), id="proc-os-fork"),
    pytest.param("import os\nos.forkpty()", refused(PROC_ERRORS), id="proc-os-forkpty"),
    pytest.param("import os\nos.spawnv(os.P_WAIT, '/bin/sh', ['sh'])", refused(PROC_ERRORS), id="proc-os-spawnv"),
    pytest.param("import os\nos.execv('/bin/sh', ['sh'])", refused(PROC_ERRORS), id="proc-os-execv"),
    pytest.param("import os\nos.posix_spawn('/bin/sh', ['sh'], {})", refused(PROC_ERRORS), id="proc-os-posix-spawn"),
    pytest.param("import os\nos.kill(1, 9)", refused(PROC_ERRORS), id="proc-os-kill"),
    pytest.param("import pty\npty.fork()", refused(PROC_ERRORS), id="proc-pty"),
    pytest.param(
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        refused(PROC_ERRORS),
        id="proc-multiprocessing",
    ),
    pytest.param(
        "import asyncio\nawait asyncio.create_subprocess_exec('ls')", refused(PROC_ERRORS), id="proc-asyncio-subprocess"
    ),
]

THREADS = [
    pytest.param(
        "import threading\nthreading.Thread(target=print).start()", refused(THREAD_ERRORS), id="thread-threading"
    ),
    pytest.param(
        "import _thread\n_thread.start_new_thread(print, ('x',))", refused(THREAD_ERRORS), id="thread-raw-thread"
    ),
    pytest.param(
        "import concurrent.futures\nwith concurrent.futures.ThreadPoolExecutor() as ex:\n    ex.submit(print).result()",
        refused(THREAD_ERRORS),
        id="thread-pool-executor",
    ),
    pytest.param("import threading\nthreading.Timer(0.01, print).start()", refused(THREAD_ERRORS), id="thread-timer"),
    pytest.param(
        "import asyncio\nawait asyncio.to_thread(print)", refused(THREAD_ERRORS), id="thread-asyncio-to-thread"
    ),
    pytest.param(
        "import asyncio\nawait asyncio.get_running_loop().run_in_executor(None, print)",
        refused(THREAD_ERRORS),
        id="thread-run-in-executor",
    ),
]

NATIVE = [
    pytest.param("import ctypes", refused(frozenset({"ModuleNotFoundError"})), id="native-ctypes"),
    pytest.param("import _ctypes", refused(frozenset({"ModuleNotFoundError"})), id="native-raw-ctypes"),
    pytest.param("import cffi", refused(frozenset({"ModuleNotFoundError"})), id="native-cffi"),
    pytest.param(
        "import sys\n[n for n in sys.builtin_module_names if n in ('_ctypes', '_posixsubprocess', 'fcntl', 'mmap', 'pwd', 'resource', 'termios')]",
        ok([]),
        id="native-no-dangerous-builtin-modules",
    ),
    pytest.param(
        "import posix\n[n for n in dir(posix) if n in ('system', 'fork', 'forkpty', 'execv', 'execve', 'spawnv', 'posix_spawn', 'kill', 'dlopen')]",
        ok([]),
        id="native-posix-has-no-process-calls",
    ),
]

GADGETS = [
    pytest.param(
        ATTEMPTS
        + """
wrap_close = next(c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close')
g = wrap_close.__init__.__globals__
attempt('environ', lambda: dict(g['environ']))
attempt('system', lambda: g['system']('cat /etc/passwd'))
attempt('popen', lambda: g['popen']('cat /etc/passwd').read())
attempt('listdir', lambda: g['listdir']('/'))
attempt('open', lambda: g['read'](g['open']('/etc/passwd', g['O_RDONLY']), 100))
result = out
""",
        ok(check=all_refused),
        id="jail-subclasses-os-wrap-close",
    ),
    pytest.param(
        ATTEMPTS
        + """
def walk(cls, seen):
    for sub in type.__subclasses__(cls):
        if sub not in seen:
            seen.add(sub)
            walk(sub, seen)
    return seen
by_name = {c.__name__: c for c in walk(object, set())}
attempt('FileIO', lambda: by_name['FileIO']('/etc/passwd').read())
attempt('FileIO-canary', lambda: by_name['FileIO']('$CANARY_FILE').read())
attempt('FileLoader', lambda: by_name['FileLoader']('m', '/etc/passwd').get_data('/etc/passwd'))
attempt('Popen', lambda: by_name['Popen'](['cat', '/etc/passwd']).communicate())
attempt('socket', lambda: by_name['socket']().connect(('127.0.0.1', $PORT)))
attempt('Thread', lambda: by_name['Thread'](target=print).start())
result = out
""",
        ok(check=all_refused),
        id="jail-subclasses-fileio-loader-popen-socket",
    ),
    pytest.param(
        ATTEMPTS
        + """
cw = next(c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'catch_warnings')
b = cw()._module.__builtins__
imp = b['__import__'] if isinstance(b, dict) else b.__import__
opener = b['open'] if isinstance(b, dict) else b.open
attempt('environ', lambda: dict(imp('os').environ))
attempt('open', lambda: opener('/etc/passwd').read())
attempt('system', lambda: imp('os').system('id'))
result = out
""",
        ok(check=all_refused),
        id="jail-catch-warnings-builtins",
    ),
    pytest.param(
        ATTEMPTS
        + """
found = {}
for c in ().__class__.__base__.__subclasses__():
    g = getattr(c.__dict__.get('__init__'), '__globals__', None) or {}
    for name in ('sys', 'os'):
        if name in g and name not in found:
            found[name] = g[name]
sys_, os_ = found['sys'], found['os']
attempt('environ', lambda: dict(os_.environ))
attempt('listdir', lambda: os_.listdir('/'))
attempt('stat', lambda: os_.stat('/etc/passwd'))
attempt('posix-system', lambda: sys_.modules['posix'].system('id'))
result = out
""",
        ok(check=all_refused),
        id="jail-function-globals-walk",
    ),
    pytest.param(
        ATTEMPTS
        + """
import sys
frames = []
f = sys._getframe()
while f is not None:
    frames.append(f.f_code.co_filename)
    g = f.f_globals
    f = f.f_back
runtime = sys._getframe(1).f_globals
host = runtime['host']
attempt('load ptc', lambda: host.load_module('ptc'))
attempt('load router', lambda: host.load_module('ptc.hostcalls.calls.router'))
attempt('load traversal', lambda: host.load_module('tools/../../../etc/passwd'))
attempt('runtime builtins open', lambda: g['__builtins__']['open']('/etc/passwd').read() if isinstance(g['__builtins__'], dict) else g['__builtins__'].open('/etc/passwd').read())
result = {'frames': frames, 'attempts': out}
""",
        ok(check=guest_frames_only),
        id="jail-frame-walk-to-runtime-globals",
    ),
    pytest.param(
        ATTEMPTS
        + """
try:
    1 / 0
except ZeroDivisionError as e:
    f = e.__traceback__.tb_frame
frames = []
while f is not None:
    frames.append(f.f_code.co_filename)
    f = f.f_back
attempt('sys via frame', lambda: dict(e.__traceback__.tb_frame.f_back.f_globals['sys'].modules['os'].environ))
result = {'frames': frames, 'attempts': out}
""",
        ok(check=guest_frames_only),
        id="jail-traceback-frame-walk",
    ),
    pytest.param(
        ATTEMPTS
        + """
import sys
def gen():
    frames = []
    f = sys._getframe()
    while f is not None:
        frames.append(f.f_code.co_filename)
        f = f.f_back
    yield frames
g = gen()
frames = next(g)
frames.append(g.gi_frame.f_code.co_filename)
attempt('gi_frame globals', lambda: g.gi_frame.f_globals['sys'].modules['posix'].listdir('/'))
result = {'frames': frames, 'attempts': out}
""",
        ok(check=guest_frames_only),
        id="jail-generator-frame-walk",
    ),
    pytest.param(
        ATTEMPTS
        + """
import asyncio, sys
async def inner():
    frames = []
    f = sys._getframe()
    while f is not None:
        frames.append(f.f_code.co_filename)
        f = f.f_back
    return frames
frames = await asyncio.create_task(inner())
attempt('loop selector', lambda: asyncio.get_running_loop()._selector.select(0))
result = {'frames': frames, 'attempts': out}
""",
        ok(check=guest_frames_only),
        id="jail-coroutine-frame-walk-through-event-loop",
    ),
    pytest.param(
        ATTEMPTS
        + """
b = __builtins__ if isinstance(__builtins__, dict) else __builtins__.__dict__
attempt('import os', lambda: dict(b['__import__']('os').environ))
attempt('open', lambda: b['open']('/etc/passwd').read())
attempt('posix listdir', lambda: b['__import__']('posix').listdir('/'))
attempt('loader', lambda: b['__loader__'].load_module('posix').listdir('/'))
attempt('exec', lambda: b['exec']("open('/etc/passwd').read()"))
result = out
""",
        ok(check=all_refused),
        id="jail-builtins-dunder",
    ),
    pytest.param(
        ATTEMPTS
        + """
import importlib, sys
for name in ('os', 'posix', 'subprocess', 'socket', '_socket'):
    sys.modules.pop(name, None)
os_ = importlib.import_module('os')
attempt('environ', lambda: dict(os_.environ))
attempt('system', lambda: os_.system('id'))
attempt('fork', lambda: os_.fork())
attempt('reload posix', lambda: importlib.reload(importlib.import_module('posix')).listdir('/'))
attempt('subprocess', lambda: importlib.import_module('subprocess').run(['id']))
attempt('socket', lambda: importlib.import_module('socket').create_connection(('127.0.0.1', $PORT)))
attempt('spec from host file', lambda: importlib.util.spec_from_file_location('x', '$REPO/hostcalls/router.py').loader.exec_module(None))
result = out
""",
        ok(check=all_refused),
        id="jail-importlib-fresh-reimport",
    ),
    pytest.param(
        ATTEMPTS
        + """
import sys, types, importlib
fake = types.ModuleType('posix')
fake.__dict__.update(vars(sys.modules['posix']))
fake.environ = {b'PLANTED': b'1'}
sys.modules['posix'] = fake
attempt('reloaded os environ', lambda: [k for k in importlib.reload(sys.modules['os']).environ if k != 'PLANTED'])
attempt('listdir', lambda: sys.modules['os'].listdir('/'))
result = out
""",
        ok(check=all_refused),
        id="jail-sys-modules-tamper",
    ),
    pytest.param(
        """
import gc, sys
# Host paths and names, as code points so that this program's own text does not hold them.
needles = [''.join(map(chr, points)) for points in $NEEDLE_CODE_POINTS]
import re
pattern = '|'.join(map(re.escape, needles))
search = re.compile(pattern).search
hits = []
def look(s):
    if s.__class__ is str and s != pattern and s not in needles and search(s):
        hits.append(s[:200])
for o in gc.get_objects():
    if o is hits:
        continue
    if isinstance(o, dict):
        for k, v in list(o.items()):
            look(k); look(v)
    elif isinstance(o, (list, tuple)):
        for v in o:
            look(v)
for m in list(sys.modules.values()):
    for v in list(vars(m).values()):
        look(v)
result = hits[:20]
""",
        ok([]).under(fuel=10_000_000_000, timeout=5),
        id="jail-memory-scan-finds-no-host-strings",
    ),
]


@pytest.mark.parametrize("code, expect", FILE_SYSTEM + ENVIRONMENT + NETWORK + PROCESSES + THREADS + NATIVE + GADGETS)
async def test_escape(
    executor: ProgrammaticToolExecutor,
    run_case: RunCase,
    listener: Listener,
    canary_file: Path,
    code: str,
    expect: Expect,
) -> None:
    canary = canary_file.read_text()
    listener.contacts()  # start from a quiet listener
    program = (
        code.replace("$PORT", str(listener.port))
        .replace("$UDP_PORT", str(listener.udp_port))
        .replace("$CANARY_FILE", str(canary_file))
        .replace("$WRITE_TARGET", str(WRITE_TARGET))
        .replace("$REPO", str(REPO_DIR))
        .replace("$NEEDLE_CODE_POINTS", repr([[ord(c) for c in needle] for needle in HOST_NEEDLES]))
    )
    try:
        await run_case(executor, program, expect)
    finally:
        assert listener.contacts() == 0, "the program reached the host's network"
        assert canary_file.read_text() == canary, "the program changed a host file"
        assert not WRITE_TARGET.exists(), "the program wrote to the host's file system"


async def test_raw_fd_writes_never_reach_the_host_process(
    executor: ProgrammaticToolExecutor, run_case: RunCase, capfd: pytest.CaptureFixture[str]
) -> None:
    # WASI stdio is not wired to the host: fd 1/2 writes below the Python layer go nowhere.
    token = "raw-fd-write-" + uuid.uuid4().hex
    capfd.readouterr()
    await run_case(
        executor,
        f"import os\nos.write(1, b'{token}\\n')\nos.write(2, b'{token}\\n')\nresult = 'written'",
        ok("written"),
    )
    captured = capfd.readouterr()
    assert token not in captured.out and token not in captured.err
