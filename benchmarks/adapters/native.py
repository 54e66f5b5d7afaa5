"""Native CPython: subprocesses of an interpreter (this one, or --native PATH), in the comparing process."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import CPU_WORKLOADS, log

from adapters.base import (
    COLD,
    NEW_HOST,
    PROCESS,
    REUSE,
    SESSION_KEYS,
    TOOL_KEYS,
    Recorder,
    Sandbox,
    expect,
    process_walls,
)

HARNESS = (
    "import sys, time\n"
    "code = compile(sys.argv[1], '<bench>', 'exec')\n"
    "namespace = {'__name__': '__main__'}\n"
    "started = time.perf_counter()\n"
    "exec(code, namespace)\n"
    "print(time.perf_counter() - started, namespace['total'])\n"
)


class Adapter(Sandbox):
    """`{python} -c pass` as a subprocess for both cold-start rows (the only fresh state natively); CPU: the same
    code `exec`'d at module level in a fresh subprocess, timed inside it (interpreter start excluded)."""

    key, title = "native", "native CPython"
    in_process = True
    not_applicable = {
        REUSE: "not a sandbox",
        NEW_HOST: "not a sandbox",
        **dict.fromkeys(TOOL_KEYS, "not a sandbox: no boundary to cross"),
        **dict.fromkeys(SESSION_KEYS, "not a sandbox: no session to keep"),
    }

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.python: str = settings.get("native", sys.executable)

    @property
    def how(self) -> str:
        return super().how.format(python=self.python)

    def cpu_samples(self, code: str, expected: object) -> list[float]:
        """Seconds of `code` timed inside fresh processes, cpu_runs of them."""
        samples = []
        for _ in range(self.settings.cpu_runs):
            done = subprocess.run([self.python, "-c", HARNESS, code], capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
            seconds, total = done.stdout.split()
            expect("total", int(total), expected)
            samples.append(float(seconds))
        return samples

    async def measure_cpu(self, suffix: str = "", **options: Any) -> None:
        log("native: CPU")
        for name, (body, value) in CPU_WORKLOADS.items():
            await self.rec.record(f"cpu_{name}", functools.partial(self.cpu_samples, body, value))

    async def measure(self) -> Recorder:
        s, rec = self.settings, self.rec
        version = subprocess.run(
            [self.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
        )
        rec.info["versions"] = {"python": version.stdout.strip(), "executable": self.python}
        samples = s.cold_samples // 2 + s.process_samples
        log(f"native: `{Path(self.python).name} -c pass`, {samples} runs")
        process_walls(s.warmup, [self.python, "-c", "pass"])
        await rec.record(PROCESS, lambda: process_walls(samples, [self.python, "-c", "pass"]))
        rec.samples[COLD] = list(rec.samples.get(PROCESS, []))  # the only way to get fresh state natively
        if PROCESS in rec.errors:
            rec.errors[COLD] = rec.errors[PROCESS]
        await self.measure_cpu()
        return rec
