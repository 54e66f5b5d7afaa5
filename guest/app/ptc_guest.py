"""The componentize-py entry point of the ptc sandbox.

Everything imported here is imported at build time and so is in the
component's snapshot: a new instance starts with it already loaded.
"""

import gc
import importlib.util
import os
import sys

import _ptc_stdlib

# The build's standard library (componentize-py mounts it at /python).
_asyncio_init = importlib.util.find_spec("asyncio").origin
_ptc_stdlib.install(os.path.dirname(os.path.dirname(_asyncio_init)))

# The modules most programs use, pre-imported into the snapshot.
import asyncio  # noqa: E402
import base64  # noqa: E402, F401
import binascii  # noqa: E402, F401
import bisect  # noqa: E402, F401
import calendar  # noqa: E402, F401
import collections  # noqa: E402, F401
import copy  # noqa: E402, F401
import csv  # noqa: E402, F401
import dataclasses  # noqa: E402, F401
import datetime  # noqa: E402, F401
import decimal  # noqa: E402, F401
import difflib  # noqa: E402, F401
import enum  # noqa: E402, F401
import fractions  # noqa: E402, F401
import functools  # noqa: E402, F401
import hashlib  # noqa: E402, F401
import heapq  # noqa: E402, F401
import hmac  # noqa: E402, F401
import html  # noqa: E402, F401
import io  # noqa: E402, F401
import ipaddress  # noqa: E402, F401
import itertools  # noqa: E402, F401
import json  # noqa: E402, F401
import math  # noqa: E402, F401
import operator  # noqa: E402, F401
import pprint  # noqa: E402, F401
import random  # noqa: E402, F401
import re  # noqa: E402, F401
import statistics  # noqa: E402, F401
import string  # noqa: E402, F401
import struct  # noqa: E402, F401
import textwrap  # noqa: E402, F401
import time  # noqa: E402, F401
import traceback  # noqa: E402, F401
import typing  # noqa: E402, F401
import unicodedata  # noqa: E402, F401
import urllib.parse  # noqa: E402, F401
import uuid  # noqa: E402, F401
import zlib  # noqa: E402, F401

import _ptc_loop  # noqa: E402
import _ptc_mem  # noqa: E402
import _ptc_run  # noqa: E402
import _ptc_tools  # noqa: E402
import msgpack  # noqa: E402, F401 - programs may use it; the runtime's frames use _ptc_codec
import wit_world  # noqa: E402

_ptc_loop.install()
_ptc_tools.install()
_ptc_stdlib.seal()
# Deep recursion must end in RecursionError, never exhaust the wasm stack:
# in Python code by the recursion limit, in C code (repr, ==, json, pickle of
# deep data) by CPython's stack guard, whose budget of shadow stack is cut to
# what the native wasm stack (ptc.wasm_threads.MAX_WASM_STACK, 8 MiB) holds
# on the hungriest paths measured (~60x native per shadow byte, in repr).
sys.setrecursionlimit(1000)
GUEST_C_STACK = 128 * 1024
if not _ptc_mem.c_stack(GUEST_C_STACK):
    raise RuntimeError("ptc: CPython's C stack limits were not found in its thread state")
del asyncio

_ptc_run.warm_up()
_ptc_tools.warm_up()

# The snapshot's objects go to the GC's permanent generation: a program's full
# collection then skips them instead of writing to every object header of the
# snapshot (a copy-on-write fault on each of its pages: measured ~15 ms and the
# whole heap made private per instance).
gc.collect()
gc.freeze()


class WitWorld(wit_world.WitWorld):
    def run(self, code: str, report_limit: int) -> None:
        _ptc_run.run(code, report_limit)

    def run_cell(self, code: str, cell: int, report_limit: int) -> None:
        _ptc_run.run_cell(code, cell, report_limit)
