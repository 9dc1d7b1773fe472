"""Type stubs for the optional extension dhatc._unwinder (native frames)."""

from typing import List, Optional, Sequence, Tuple

#: The capsule holding the C table the engine unwinds with.
_C_API: object

def symbolize(
    requests: Sequence[Tuple[int, str, int, bool]],
) -> List[Tuple[bool, List[Tuple[Optional[str], Optional[str], int]]]]: ...
def function_ranges(path: str, bias: int, name: str) -> List[Tuple[int, int]]: ...
def function_holding(address: int) -> Optional[Tuple[int, int]]: ...
