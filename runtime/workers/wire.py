"""Messages between the parent and a worker: a 4-byte length, then one msgpack array `[kind, ...]`.

The parent trusts what it sends; everything it reads from a worker is
hostile (a compromised worker is one more untrusted guest): the length is
checked against a cap before a byte of the body is read, the body is decoded
with msgpack's own container caps and no ext types, and every field is
checked for its type by the reader before it is used. A broken message is a
WorkerProtocolError, which the parent answers by killing that worker.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack

from ptc.errors import PtcError

_HEADER = struct.Struct(">I")
MAX_MESSAGE = (1 << 32) - 1  # what the header can say; readers pass their own, smaller caps
MAX_ITEMS = 1_000_000  # elements of one message (a reply, the report's value)


class WorkerProtocolError(PtcError):
    """A worker sent something that is not a well-formed message within its caps (or the pipe broke mid-message)."""


class Closed(PtcError):
    """The other end closed the connection (EOF between messages)."""


def _no_ext(code: int, data: bytes) -> Any:
    raise WorkerProtocolError(f"msgpack ext type {code} is not allowed")


def encode(message: list[Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes, max_items: int = MAX_ITEMS) -> list[Any]:
    """One message body: a non-empty array whose first element is a string kind."""
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=False,
            ext_hook=_no_ext,
            max_array_len=max_items,
            max_map_len=max_items,
            max_str_len=len(body),
            max_bin_len=len(body),
        )
    except WorkerProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for garbage
        raise WorkerProtocolError(f"a malformed message ({type(exc).__name__})") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise WorkerProtocolError("a message must be an array starting with its kind")
    return message


class Connection:
    """One end of a socket pair: whole messages out (any thread, one at a time), whole messages in (one reader)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send = threading.Lock()

    def send(self, message: list[Any]) -> bool:
        """False if the other end is gone (the reader will see EOF and say so)."""
        data = encode(message)
        with self._send:
            try:
                self.sock.sendall(data)
            except OSError:
                return False
        return True

    def _exactly(self, n: int, first: bool) -> bytes:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            try:
                chunk = self.sock.recv_into(view[got:], n - got)
            except OSError:
                chunk = 0
            if chunk == 0:
                if first and got == 0:
                    raise Closed("the connection was closed")
                raise WorkerProtocolError("the connection broke in the middle of a message")
            got += chunk
        return bytes(buffer)

    def receive(self, max_bytes: int | Callable[[], int] = MAX_MESSAGE) -> list[Any]:
        """The next message; Closed at EOF, WorkerProtocolError for one longer than `max_bytes` or malformed.

        A callable cap is asked once the header has come (it may have grown while this waited)."""
        (size,) = _HEADER.unpack(self._exactly(_HEADER.size, True))
        cap = max_bytes() if callable(max_bytes) else max_bytes
        if size > cap:
            raise WorkerProtocolError(f"a message of {size} bytes is over its {cap}-byte cap")
        return decode(self._exactly(size, False))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
