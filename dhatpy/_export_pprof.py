"""A DHAT file as a pprof profile: the gzipped ``perftools.profiles.Profile``
protocol buffer of pprof's ``proto/profile.proto``, which ``go tool pprof``
and Pyroscope-style tools read.

One sample per program point, its locations innermost first (pprof's leaf
first, as DHAT's ``fs``).  Sample types for a heap file, in Go's heap-profile
names: ``alloc_objects``/``alloc_space`` (total blocks/bytes), ``inuse_objects``/
``inuse_space`` (live at t-end), and ``gmax_objects``/``gmax_space`` (live at
t-gmax, the global peak).  An ad hoc file has its events and units.  Each
distinct frame string is one Location (with Valgrind's or the crate's address),
with one Line naming a Function (name and file taken from the frame string),
the line number and column.
"""

from __future__ import annotations

import gzip
import os
from typing import Dict, List, Tuple

from ._dhat_reader import DhatFile
from ._frame_text import parse_frame
from ._metrics import Metric
from ._protobuf import put_bytes, put_int, put_packed, put_string

# Field numbers of profile.proto.
_PROFILE_SAMPLE_TYPE = 1
_PROFILE_SAMPLE = 2
_PROFILE_LOCATION = 4
_PROFILE_FUNCTION = 5
_PROFILE_STRING_TABLE = 6
_PROFILE_COMMENT = 13
_PROFILE_DEFAULT_SAMPLE_TYPE = 14
_VALUE_TYPE_TYPE, _VALUE_TYPE_UNIT = 1, 2
_SAMPLE_LOCATION_ID, _SAMPLE_VALUE = 1, 2
_LOCATION_ID, _LOCATION_ADDRESS, _LOCATION_LINE = 1, 3, 4
_LINE_FUNCTION_ID, _LINE_LINE, _LINE_COLUMN = 1, 2, 3
_FUNCTION_ID, _FUNCTION_NAME, _FUNCTION_SYSTEM_NAME, _FUNCTION_FILENAME = 1, 2, 3, 4


def sample_types(file: DhatFile) -> List[Tuple[str, str, str]]:
    """(pprof type, pprof unit, the metric it holds), in the order of the values."""
    if not file.block_lifetimes:
        return [(file.blocks_unit, "count", "total_blocks"),
                (file.bytes_unit, "count", "total_bytes")]
    return [
        ("alloc_objects", "count", "total_blocks"),
        ("alloc_space", "bytes", "total_bytes"),
        ("inuse_objects", "count", "end_blocks"),
        ("inuse_space", "bytes", "end_bytes"),
        ("gmax_objects", "count", "gmax_blocks"),
        ("gmax_space", "bytes", "gmax_bytes"),
    ]


class _Strings:
    """The string table: "" first, each string once."""

    def __init__(self) -> None:
        self.index: Dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))


def pprof_bytes(file: DhatFile, default: Metric) -> bytes:
    """The gzipped Profile message of `file`; `default` is its default sample type."""
    strings = _Strings()
    out = bytearray()
    types = sample_types(file)
    for kind, unit, _ in types:
        value_type = bytearray()
        put_int(value_type, _VALUE_TYPE_TYPE, strings(kind))
        put_int(value_type, _VALUE_TYPE_UNIT, strings(unit))
        put_bytes(out, _PROFILE_SAMPLE_TYPE, bytes(value_type))

    locations: Dict[str, int] = {}
    functions: Dict[Tuple[str, str], int] = {}
    location_messages = bytearray()
    function_messages = bytearray()

    def location_id(frame: str) -> int:
        found = locations.get(frame)
        if found is not None:
            return found
        parts = parse_frame(frame)
        name = parts.name or frame
        filename = parts.file or parts.object or ""
        function_id = functions.get((name, filename))
        if function_id is None:
            function_id = functions[(name, filename)] = len(functions) + 1
            function = bytearray()
            put_int(function, _FUNCTION_ID, function_id)
            put_int(function, _FUNCTION_NAME, strings(name))
            put_int(function, _FUNCTION_SYSTEM_NAME, strings(name))
            put_int(function, _FUNCTION_FILENAME, strings(filename))
            put_bytes(function_messages, _PROFILE_FUNCTION, bytes(function))
        new_id = locations[frame] = len(locations) + 1
        line = bytearray()
        put_int(line, _LINE_FUNCTION_ID, function_id)
        put_int(line, _LINE_LINE, parts.line or 0)
        put_int(line, _LINE_COLUMN, parts.column or 0)  # the Rust crate's frames have one
        location = bytearray()
        put_int(location, _LOCATION_ID, new_id)
        put_int(location, _LOCATION_ADDRESS, parts.address or 0)
        put_bytes(location, _LOCATION_LINE, bytes(line))
        put_bytes(location_messages, _PROFILE_LOCATION, bytes(location))
        return new_id

    for pp in file.pps:
        sample = bytearray()
        put_packed(sample, _SAMPLE_LOCATION_ID, [location_id(f) for f in pp.frames])
        put_packed(sample, _SAMPLE_VALUE, [int(getattr(pp, m) or 0) for _, _, m in types])
        put_bytes(out, _PROFILE_SAMPLE, bytes(sample))
    out += location_messages
    out += function_messages

    comments = [
        f"dhatc export of {os.path.basename(file.path)} ({file.mode})",
        f"cmd: {file.cmd}",
        f"pid: {file.pid}",
    ]
    if file.block_lifetimes:
        comments.append("inuse_*: live at t-end; gmax_*: live at t-gmax, the global peak; "
                        f"times in {file.time_unit}")
    comment_ids = [strings(c) for c in comments]
    default_id = strings(next(kind for kind, _, m in types if m == default.name))
    # The string table comes last: only now is every string in it.
    for text in strings.index:
        put_string(out, _PROFILE_STRING_TABLE, text)
    put_packed(out, _PROFILE_COMMENT, comment_ids)
    put_int(out, _PROFILE_DEFAULT_SAMPLE_TYPE, default_id)
    return gzip.compress(bytes(out), mtime=0)
