"""Type stubs for the C engine (dhatc._engine)."""

from typing import Any, Dict, Optional

MODE_HEAP: int
MODE_AD_HOC: int
MAX_DEPTH: int

class HeapStats:
    total_blocks: int
    total_bytes: int
    curr_blocks: int
    curr_bytes: int
    max_blocks: int
    max_bytes: int
    def __init__(
        self,
        *,
        total_blocks: int,
        total_bytes: int,
        curr_blocks: int,
        curr_bytes: int,
        max_blocks: int,
        max_bytes: int,
    ) -> None: ...
    @staticmethod
    def get() -> "HeapStats": ...

class AdHocStats:
    total_events: int
    total_units: int
    def __init__(self, *, total_events: int, total_units: int) -> None: ...
    @staticmethod
    def get() -> "AdHocStats": ...

def start(mode: int, trim: int, skip: int, this_thread_only: bool = False) -> None: ...
def stop() -> Dict[str, Any]: ...
def abandon() -> None: ...
def running() -> Optional[str]: ...
def set_asserted(flag: bool) -> None: ...
def rehook() -> None: ...
def ad_hoc_event(weight: int = 1) -> None: ...
def native_tracking() -> bool: ...
