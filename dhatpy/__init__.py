"""dhatc: DHAT-style heap profiling and heap-usage testing for Python.

    import dhatc

    with dhatc.Profiler(mode="heap"):
        work()
    # -> dhat-heap.json (open it in Valgrind's DHAT viewer) + a summary on stderr

    with dhatc.Profiler(mode="heap", testing=True):
        work()
        stats = dhatc.HeapStats.get()
        dhatc.assert_eq(stats.curr_blocks, 0)  # on failure: saves the profile, raises
"""

from ._dhat_file import Profile, ProgramPoint
from ._engine import AdHocStats, HeapStats, ProfilerAlreadyRunningError, ad_hoc_event
from ._profiler import Profiler
from ._testing import assert_, assert_eq, assert_ne

__all__ = [
    "AdHocStats",
    "HeapStats",
    "Profile",
    "Profiler",
    "ProfilerAlreadyRunningError",
    "ProgramPoint",
    "ad_hoc_event",
    "assert_",
    "assert_eq",
    "assert_ne",
]
__version__ = "0.1.0"
