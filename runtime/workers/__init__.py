"""Worker processes: executions run in N child processes, their tool calls forwarded back to the parent.

`wire` frames the messages, `child` is a worker's main (`python -m
ptc.workers.child`), `pool` is the parent's side. The parent keeps everything
that is not the sandbox (router, records, events, audit, tenancy); a worker
keeps only what runs the program (engine, compiled guest, spares, the
execution's state), so the split is the `dispatch` seam of ExecutionState.
"""
