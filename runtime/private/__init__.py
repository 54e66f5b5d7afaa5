"""Other libraries' private APIs, each behind one small module: all of ptc's uses are here.

One module per library (`wasmtime`, `asyncio`, `futures` for concurrent.futures,
`mcp`); each says why the private name is used and what the public alternative
costs. tests/test_private_apis.py checks every name against the pinned
versions and names the library version that changed one. These modules
import nothing of ptc: they sit below everything else (tests/test_layers.py).
"""
