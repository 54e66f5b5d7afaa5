"""ptc: run an LLM's Python program against a tool catalog in a WebAssembly sandbox."""

from ptc.catalog import ToolCatalog
from ptc.executor import ProgrammaticToolExecutor
from ptc.limits import Limits
from ptc.results import ExecutionError, ExecutionResult

__all__ = [
    "ExecutionError",
    "ExecutionResult",
    "Limits",
    "ProgrammaticToolExecutor",
    "ToolCatalog",
]
