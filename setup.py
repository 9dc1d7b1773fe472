"""Builds dhatc's C engine.  Metadata lives in pyproject.toml.

Knobs (environment variables):
  DHATC_SANITIZE=1   build with AddressSanitizer and UBSan (for the engine's own tests)
  DHATC_DEBUG=1      build without optimisation, with debug info
"""

import os

from setuptools import Extension, setup

ENGINE_SOURCES = [
    "src/dhatc/module.c",  # the CPython binding
    "src/dhatc/stats_types.c",  # HeapStats, AdHocStats
    "src/dhatc/hooks.c",  # PyMem allocator hooks
    "src/dhatc/frames.c",  # per-version frame walker
    "src/dhatc/profile.c",  # program points, figures, peak tracking
    "src/dhatc/stacktable.c",  # distinct stacks -> program points
    "src/dhatc/livemap.c",  # live blocks
    "src/dhatc/rawmem.c",  # the engine's own memory
]

compile_args = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
link_args = []
if os.environ.get("DHATC_DEBUG"):
    compile_args += ["-O0", "-g3"]
else:
    compile_args += ["-O2"]
if os.environ.get("DHATC_SANITIZE"):
    sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    compile_args += sanitizers
    link_args += sanitizers

setup(
    ext_modules=[
        Extension(
            "dhatc._engine",
            sources=ENGINE_SOURCES,
            include_dirs=["src/dhatc"],
            define_macros=[("_GNU_SOURCE", "1")],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            libraries=["pthread"],
        )
    ],
)
