"""The few pieces of the protocol buffers wire format that a pprof profile
needs: varints, keys, length-delimited fields and packed repeated integers.
(https://protobuf.dev/programming-guides/encoding/ defines them.)

Every function appends to a bytearray; a field whose value is the proto3
default (0, "", empty) is left out, as a proto3 encoder does.
"""

from __future__ import annotations

from typing import Iterable

_VARINT = 0
_LENGTH_DELIMITED = 2


def put_varint(out: bytearray, value: int) -> None:
    """Base 128, low group first; a negative int64 as its 64-bit two's complement."""
    if value < 0:
        value += 1 << 64
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_int(out: bytearray, field: int, value: int) -> None:
    """An int64/uint64/bool field."""
    if value:
        put_varint(out, field << 3 | _VARINT)
        put_varint(out, value)


def put_bytes(out: bytearray, field: int, data: bytes) -> None:
    """A bytes or embedded-message field (written even when empty: an empty
    message in a repeated field is still an element)."""
    put_varint(out, field << 3 | _LENGTH_DELIMITED)
    put_varint(out, len(data))
    out += data


def put_string(out: bytearray, field: int, text: str) -> None:
    """A string element of a repeated field (always written: its position counts)."""
    put_bytes(out, field, text.encode("utf-8", "surrogatepass"))


def put_packed(out: bytearray, field: int, values: Iterable[int]) -> None:
    """A packed repeated int64/uint64 field (proto3's default encoding)."""
    body = bytearray()
    for value in values:
        put_varint(body, value)
    if body:
        put_bytes(out, field, bytes(body))
