"""The engine decodes each code object's line table once (src/dhatc/linetable.c)
instead of calling PyCode_Addr2Line, which rescans it, for every new program
point.  Its answers must be PyCode_Addr2Line's, at every offset."""

from __future__ import annotations

import importlib
import sys
import textwrap
from types import CodeType
from typing import Iterator

import pytest

from dhatc import _engine

MODULES = [
    "argparse", "ast", "asyncio.base_events", "collections", "dataclasses", "decimal",
    "email.message", "enum", "inspect", "json.decoder", "logging", "pathlib", "pickle",
    "re._compiler" if sys.version_info >= (3, 11) else "sre_compile", "statistics",
    "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest.case", "zipfile",
]


def all_code(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from all_code(const)


def module_code(name: str) -> CodeType:
    module = importlib.import_module(name)
    path = module.__file__
    assert path is not None
    with open(path, "rb") as f:
        return compile(f.read(), path, "exec")


@pytest.mark.parametrize("name", MODULES)
def test_every_offset_of_the_standard_library(name):
    mismatches = [
        (code.co_qualname if hasattr(code, "co_qualname") else code.co_name, bad)
        for code in all_code(module_code(name))
        if (bad := _engine._check_lines(code)) is not None
    ]
    assert mismatches == []


ODD = (
    "import functools\n"
    "\n"
    "@functools.lru_cache(\n"
    "    maxsize=None,\n"
    ")\n"
    "def f(x):\n"
    "    y = (x +\n"
    "         1)\n"
    + "\n" * 300
    + "    return [y for _ in range(3)\n"
    "            if _]\n"
    "\n"
    "class C:\n"
    "    def g(self): return lambda: (yield)\n"
    "try:\n"
    "    pass\n"
    "finally:\n"
    "    z = 1\n"
    + "\n" * 70000
    + "w = 2\n"
)


def test_odd_tables():
    # Line jumps beyond one byte's delta, blank lines, lines going backwards
    # (a decorator, a multi-line expression), no-line instructions, one-line bodies.
    mismatches = [
        (code.co_name, bad)
        for code in all_code(compile(ODD, "odd.py", "exec"))
        if (bad := _engine._check_lines(code)) is not None
    ]
    assert mismatches == []


def test_a_huge_generated_function():
    # One line per statement, thousands of them: the kind of code that made the
    # old per-program-point lookup quadratic.
    body = "".join(f"    x{i} = [{i}]\n" for i in range(3_000))
    code = compile(f"def huge():\n{body}", "huge.py", "exec").co_consts[0]
    assert isinstance(code, CodeType)
    assert _engine._check_lines(code) is None
