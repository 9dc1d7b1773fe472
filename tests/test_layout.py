"""The frame walker refuses an interpreter whose layout it was not built for.

From CPython 3.13 the interpreter publishes the offsets of the fields a frame
walker reads (``_Py_DebugOffsets``, at the start of ``_PyRuntime``); every
``Profiler.start()`` compares the ones dhatc reads with those it was compiled
with.  These tests feed the check a doctored copy of the real offsets."""

from __future__ import annotations

import re
import struct
import sys

import pytest

import dhatc
from dhatc import _engine

needs_offsets = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="CPython publishes its debug offsets from 3.13"
)

# Offsets into _Py_DebugOffsets: cookie[8], version, free_threaded, then the
# runtime state's three fields; the interpreter state's come next.
VERSION_AT = 8
FREE_THREADED_AT = 16


def doctored(at: int, value: int) -> bytes:
    offsets = bytearray(_engine._layout_offsets() or b"")
    struct.pack_into("<Q", offsets, at, value)
    return bytes(offsets)


@needs_offsets
def test_the_running_interpreter_matches():
    offsets = _engine._layout_offsets()
    assert offsets is not None and offsets[:8] == b"xdebugpy"
    _engine._check_layout(offsets)  # no error


@needs_offsets
def test_another_minor_version_is_refused():
    bad = doctored(VERSION_AT, 0x03630000)  # "3.99"
    with pytest.raises(RuntimeError) as error:
        _engine._check_layout(bad)
    message = str(error.value)
    assert message.startswith(
        f"dhatc: this build of dhatc does not match the running interpreter, CPython "
        f"{sys.version.split()[0]} (version >> 16: 867, dhatc was built for "
    )
    assert "rebuild dhatc for this interpreter" in message


@needs_offsets
def test_a_free_threaded_interpreter_is_refused():
    with pytest.raises(RuntimeError, match=r"\(free_threaded: 1, dhatc was built for 0\)"):
        _engine._check_layout(doctored(FREE_THREADED_AT, 1))


@needs_offsets
def test_every_field_the_walker_reads_is_compared():
    # Shift each 8-byte field after the header in turn: the fields dhatc reads
    # must be refused, and none of them may be missed (a field whose change
    # passes is one the walker does not read).
    offsets = _engine._layout_offsets()
    assert offsets is not None
    refused = set()
    for at in range(24, len(offsets) - 7, 8):
        (value,) = struct.unpack_from("<Q", offsets, at)
        try:
            _engine._check_layout(doctored(at, value + 8))
        except RuntimeError as e:
            match = re.search(r"\(([a-z_.]+): \d+, dhatc was built for \d+\)", str(e))
            assert match is not None, str(e)
            refused.add(match.group(1))
    assert refused == {
        "thread_state.interp",
        "thread_state.current_frame",
        "interpreter_frame.previous",
        "interpreter_frame.executable",
        "interpreter_frame.instr_ptr",
        "interpreter_frame.owner",
        "code_object.filename",
        "code_object.qualname",
        "code_object.co_code_adaptive",
    }


@needs_offsets
def test_a_wrong_cookie_is_refused():
    offsets = b"ydebugpy" + (_engine._layout_offsets() or b"")[8:]
    with pytest.raises(RuntimeError, match="publishes no debug offsets"):
        _engine._check_layout(offsets)


@needs_offsets
def test_a_short_copy_is_a_value_error():
    with pytest.raises(ValueError):
        _engine._check_layout(b"xdebugpy")


@needs_offsets
def test_profiler_start_refuses_a_mismatch_and_nothing_runs(run_python):
    proc = run_python(
        """
        import struct, dhatc
        from dhatc import _engine
        offsets = bytearray(_engine._layout_offsets())
        struct.pack_into("<Q", offsets, 8, 0x03630000)
        _engine._set_test_layout(bytes(offsets))
        for mode in ("heap", "ad-hoc"):
            try:
                dhatc.Profiler(mode, testing=True).start()
            except RuntimeError as e:
                print(type(e).__name__, str(e)[:60])
        print(_engine.running())
        _engine._set_test_layout(None)
        with dhatc.Profiler(testing=True):
            print(dhatc.HeapStats.get().total_blocks)
        """
    )
    assert proc.stdout.splitlines() == [
        "RuntimeError dhatc: this build of dhatc does not match the running interp",
        "RuntimeError dhatc: this build of dhatc does not match the running interp",
        "None",
        "0",
    ]


def test_profiles_start_on_a_matching_interpreter():
    # (Before 3.13 there is nothing to compare: the check passes.)
    with dhatc.Profiler(testing=True):
        stats = dhatc.HeapStats.get()
    assert stats.total_blocks == 0


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.9-3.12 publish no offsets")
def test_nothing_is_published_before_3_13():
    assert _engine._layout_offsets() is None
