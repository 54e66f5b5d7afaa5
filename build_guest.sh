#!/usr/bin/env bash
# Build the sandbox guest (CPython 3.14 for WASI, via componentize-py) from
# guest/ and precompile it for this machine's wasmtime. The runtime does the
# same on first use; run this to pay its ~20-90 s (2 cores) ahead of time (CI, images).
# Output: $PTC_CACHE_DIR (default ~/.cache/ptc)/guest-<key>.wasm and .cwasm.
set -euo pipefail
cd "$(dirname "$0")"
python3 -c "import ptc" 2>/dev/null || python3 -m pip install -q -e .
python3 -m ptc.engine
