# shellcheck shell=bash
# The Debian packages dhatc's build, demo and tests need: one list for the host
# (scripts/install-system-deps.sh) and for the Debian sid root that the tests
# on CPython 3.14 and 3.15 run in (scripts/sid-root.sh).  Sourced, not run.
# shellcheck disable=SC2034  # used by the scripts that source this file
system_packages=(
    gcc g++ make libc6-dev   # the engine's build; tests compile C programs and extensions
    binutils                 # readelf and nm for the preload library's tests; c++filt names C++ frames
    git                      # tests/test_packaging.py lists the checkout's files
    valgrind                 # DHAT is the tests' oracle, its viewer their client
    chromium-headless-shell  # loads files into DHAT's viewer
    libunwind-dev libdw-dev  # dhatc._unwinder: native frames (Profiler(native=True))
)
