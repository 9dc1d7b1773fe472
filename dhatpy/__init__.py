"""dhatc: DHAT-style heap profiling and heap-usage testing for Python.

    import dhatc

    with dhatc.Profiler(mode="heap"):
        work()
    # -> dhat-heap.json (open it in Valgrind's DHAT viewer) + a summary on stderr

    with dhatc.Profiler(mode="heap", testing=True):
        work()
        stats = dhatc.HeapStats.get()
"""

from ._engine import AdHocStats, HeapStats, ad_hoc_event
from ._profiler import Profiler

__all__ = ["AdHocStats", "HeapStats", "Profiler", "ad_hoc_event"]
__version__ = "0.1.0"
