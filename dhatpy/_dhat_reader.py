"""THROWAWAY stand-in for the "terminal" helper's reader (same API); replaced
by theirs when it lands on main.  Minimal checks only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ._errors import CommandError


class DhatFileError(CommandError):
    """A file that is not a DHAT file: one line '<path>: <problem>'."""


@dataclass(frozen=True)
class ReadProgramPoint:
    frames: Tuple[str, ...]
    total_bytes: int
    total_blocks: int
    total_lifetime: Optional[int] = None
    max_bytes: Optional[int] = None
    max_blocks: Optional[int] = None
    gmax_bytes: Optional[int] = None
    gmax_blocks: Optional[int] = None
    end_bytes: Optional[int] = None
    end_blocks: Optional[int] = None
    reads: Optional[int] = None
    writes: Optional[int] = None


@dataclass(frozen=True)
class DhatFile:
    path: str
    mode: str
    verb: str
    block_lifetimes: bool
    block_accesses: bool
    byte_unit: str
    bytes_unit: str
    blocks_unit: str
    time_unit: str
    time_unit_million: str
    short_lived_threshold: Optional[int]
    cmd: str
    pid: int
    time_of_peak: Optional[int]
    time_of_end: int
    pps: Tuple[ReadProgramPoint, ...]


def load(path: str) -> DhatFile:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DhatFileError(f"{path}: {e.strerror}") from None
    return loads(data.decode("utf-8", "replace"), path)


def loads(text: str, name: str = "<string>") -> DhatFile:
    try:
        d: Any = json.loads(text)
        if not isinstance(d, dict) or d.get("dhatFileVersion") != 2:
            raise ValueError("not a DHAT file (dhatFileVersion 2)")
        ftbl = d["ftbl"]
        bklt = bool(d["bklt"])
        pps = []
        for pp in d["pps"]:
            g = pp.get
            pps.append(ReadProgramPoint(
                frames=tuple(ftbl[i] for i in pp["fs"]), total_bytes=pp["tb"],
                total_blocks=pp["tbk"], total_lifetime=g("tl"), max_bytes=g("mb"),
                max_blocks=g("mbk"), gmax_bytes=g("gb"), gmax_blocks=g("gbk"),
                end_bytes=g("eb"), end_blocks=g("ebk"), reads=g("rb"), writes=g("wb")))
        return DhatFile(
            path=name, mode=d["mode"], verb=d["verb"], block_lifetimes=bklt,
            block_accesses=bool(d["bkacc"]), byte_unit=d.get("bu", "byte"),
            bytes_unit=d.get("bsu", "bytes"), blocks_unit=d.get("bksu", "blocks"),
            time_unit=d["tu"], time_unit_million=d["Mtu"], short_lived_threshold=d.get("tuth"),
            cmd=d["cmd"], pid=d["pid"], time_of_peak=d.get("tg"), time_of_end=d["te"],
            pps=tuple(pps))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DhatFileError(f"{name}: {e}") from None
