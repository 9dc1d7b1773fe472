"""Builds dhatc's C engine.  Metadata lives in pyproject.toml.

Knobs (environment variables):
  DHATC_NATIVE_FRAMES=auto|0|1   build dhatc._unwinder (native frames) if libunwind's and
                     libdw's headers are there (auto), never, or always (failing without them)
  DHATC_SANITIZE=1   build with AddressSanitizer and UBSan (for the engine's own tests)
  DHATC_DEBUG=1      build without optimisation, with debug info
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The frame walker reads the interpreter's own structs (src/dhatc/frames.c),
# known for these builds only: say so in one sentence rather than fail in C.
if sys.version_info[:2] < (3, 9) or sys.version_info[:2] > (3, 15):
    sys.exit(
        "dhatc supports CPython 3.9 to 3.15; this is %d.%d" % sys.version_info[:2]
    )
if sysconfig.get_config_var("Py_GIL_DISABLED"):
    sys.exit(
        "dhatc supports CPython 3.9 to 3.15 with the GIL; free-threaded builds "
        "(python3.13t and later 't' builds) are not supported yet"
    )

ENGINE_SOURCES = [
    "src/dhatc/module.c",  # the CPython binding
    "src/dhatc/stats_types.c",  # HeapStats, AdHocStats
    "src/dhatc/session.c",  # a profile's lifecycle: start, stop, release
    "src/dhatc/hooks.c",  # PyMem allocator hooks
    "src/dhatc/native.c",  # connects the profile to the preload library
    "src/dhatc/nativestack.c",  # mixed native and Python stacks (native=True)
    "src/dhatc/record.c",  # blocks, frees and events into the profile, with their stacks
    "src/dhatc/frames.c",  # per-version frame walker
    "src/dhatc/codetable.c",  # the code objects of the profile's stacks
    "src/dhatc/linetable.c",  # a code object's line table, decoded once
    "src/dhatc/layout.c",  # the frame walker's layout checked against the interpreter's
    "src/dhatc/profile.c",  # program points, figures, peak tracking
    "src/dhatc/stacktable.c",  # distinct stacks -> program points
    "src/dhatc/livemap.c",  # live blocks: a shadow of the heap
    "src/dhatc/blockhash.c",  # live blocks the shadow cannot hold
    "src/dhatc/rawmem.c",  # the engine's own memory
    "src/dhatc/sigterm.c",  # SIGTERM sent again until the Python handler has run
]

# The preload library (LD_PRELOAD for `python -m dhatc run`): a plain shared
# object, not a Python module.  It must not use or link libpython (it is
# loaded into every process started with it, before Python), so it is built
# as an Extension only for setuptools' compiler plumbing, under a fixed name.
PRELOAD_NAME = "dhatc._preload"
PRELOAD_FILE = "libdhatc_preload.so"

compile_args = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-flto"]
link_args = ["-flto"]

if os.environ.get("DHATC_DEBUG") or os.environ.get("DHATC_SANITIZE"):
    compile_args += ["-DDHATC_CHECKS"]  # the figures' invariants (src/dhatc/check.h)
if os.environ.get("DHATC_DEBUG"):
    compile_args += ["-O0", "-g3"]
else:
    compile_args += ["-O2"]
if os.environ.get("DHATC_SANITIZE"):
    sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    compile_args += sanitizers
    link_args += sanitizers


class BuildExt(build_ext):
    """Names the preload library libdhatc_preload.so and links it with no
    Python library, whatever the platform's extension conventions say."""

    def get_ext_filename(self, fullname):
        # Called with the full name and, by get_ext_fullpath, with the last part.
        filename = super().get_ext_filename(fullname)
        if fullname in (PRELOAD_NAME, PRELOAD_NAME.rpartition(".")[2]):
            return os.path.join(os.path.dirname(filename), PRELOAD_FILE)
        return filename

    def get_export_symbols(self, ext):
        return [] if ext.name == PRELOAD_NAME else super().get_export_symbols(ext)

    def get_libraries(self, ext):
        return list(ext.libraries) if ext.name == PRELOAD_NAME else super().get_libraries(ext)


def native_frames_buildable():
    """Whether libunwind's and libdw's headers are installed: dhatc._unwinder
    (native frames) is built only then; the core needs neither."""
    multiarch = sysconfig.get_config_var("MULTIARCH")  # Debian puts libunwind.h there
    include_dirs = ["/usr/include", "/usr/local/include"]
    include_dirs += [os.path.join("/usr/include", multiarch)] if multiarch else []

    def found(header):
        return any(os.path.exists(os.path.join(d, header)) for d in include_dirs)

    wanted = os.environ.get("DHATC_NATIVE_FRAMES", "auto")
    if wanted == "0":
        return False
    present = found("libunwind.h") and found("elfutils/libdwfl.h")
    if wanted == "1" and not present:
        sys.exit("DHATC_NATIVE_FRAMES=1: libunwind's and libdw's headers are missing "
                 "(apt install libunwind-dev libdw-dev)")
    return present


UNWINDER = Extension(
    "dhatc._unwinder",
    sources=["src/dhatc/unwinder.c"],
    include_dirs=["src/dhatc"],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=[a for a in compile_args if a != "-DDHATC_CHECKS"],
    extra_link_args=link_args,
    libraries=["unwind", "dw", "elf"],
)

# The engine's hot path updates a dozen counters per block: GCC's SLP
# vectorizer packs pairs of them into SSE registers with shuffles around the
# adds, more instructions than the plain adds (8 per block, measured with
# callgrind).  Also at the link: with -flto the code is made there.
engine_tuning = [] if os.environ.get("DHATC_DEBUG") else ["-fno-tree-slp-vectorize"]

# Not sanitized: ASan interposes malloc itself and must come first in the
# library list, so an instrumented interposer would run before its runtime.
preload_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
preload_compile_args += ["-O0", "-g3"] if os.environ.get("DHATC_DEBUG") else ["-O2"]

setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "dhatc._engine",
            sources=ENGINE_SOURCES,
            include_dirs=["src/dhatc"],
            define_macros=[("_GNU_SOURCE", "1")],
            extra_compile_args=compile_args + engine_tuning,
            extra_link_args=link_args + engine_tuning,
            libraries=["pthread", "dl", "rt"],  # dl, rt: dlsym/dladdr, timer_create before glibc 2.34
        ),
        Extension(
            PRELOAD_NAME,
            sources=["src/dhatc/preload.c"],
            include_dirs=["src/dhatc"],
            define_macros=[("_GNU_SOURCE", "1")],
            extra_compile_args=preload_compile_args,
            # Bind every symbol at load time: no lazy resolution inside malloc.
            extra_link_args=["-Wl,-z,now"],
            libraries=["dl"],
        ),
        # Program points of dhatc's own layout read straight into arrays
        # (dhatpy/_dhat_reader.py); not the engine: no engine file in it.
        Extension(
            "dhatc._ppscan",
            sources=["src/dhatc/ppscan.c"],
            extra_compile_args=[a for a in compile_args if a != "-DDHATC_CHECKS"],
            extra_link_args=link_args,
        ),
    ]
    + ([UNWINDER] if native_frames_buildable() else []),
)
