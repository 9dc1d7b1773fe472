"""What ``dhatc run``'s launcher (:mod:`dhatc._cmd_run`) tells the bootstrap
(:mod:`dhatc._bootstrap`), which runs in the interpreter the launcher
re-executes: one frozen dataclass, serialised as JSON on the way (the first
argument after the bootstrap's ``-c`` program)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

TARGET_KINDS = ("path", "module", "code")


@dataclass(frozen=True)
class Target:
    """What to run, as python's command line names it."""

    kind: str  # "path" (a script, directory or zip), "module" (-m) or "code" (-c)
    value: str  # the path, the module's name or the code
    args: Tuple[str, ...] = ()  # the target's own arguments (its sys.argv[1:])


@dataclass(frozen=True)
class RunConfig:
    """Everything the bootstrap needs besides the target's arguments, which
    follow the JSON on its command line as they are."""

    kind: str  # Target.kind
    target: str  # Target.value
    mode: str  # "heap" or "ad-hoc"
    output: str  # the file, relative to `output_dir` unless absolute
    trim: int  # Python frames kept per stack
    output_dir: str  # where dhatc was started: the file goes there
    ld_preload: Optional[str]  # LD_PRELOAD as it was before dhatc (None: unset)
    preloaded: bool  # whether the preload library is in the target's LD_PRELOAD
    follow_children: bool = False  # profile every Python process the target starts
    merge: bool = False  # with follow_children: a merged file of all of them at the end
    native: bool = False  # native frames in every stack (Profiler(native=True))
    native_interpreter_frames: bool = False  # with native: the interpreter's C frames too

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        """The config :meth:`to_json` wrote; ValueError for anything else."""
        config = cls(**_fields_of(cls, text))
        _check_types(config, {"kind": str, "target": str, "mode": str, "output": str,
                              "trim": int, "output_dir": str, "preloaded": bool,
                              "follow_children": bool, "merge": bool, "native": bool,
                              "native_interpreter_frames": bool})
        if not (config.ld_preload is None or isinstance(config.ld_preload, str)):
            raise ValueError("dhatc run configuration: ld_preload must be a str or None")
        if config.kind not in TARGET_KINDS or config.mode not in MODES:
            raise ValueError(f"dhatc run configuration: bad kind or mode: {config!r}")
        return config


@dataclass(frozen=True)
class ChildConfig:
    """What a child of a ``dhatc run --follow-children`` target needs to profile
    itself: in the environment variable :data:`CHILD_CONFIG_VARIABLE` for a
    child that starts a new program, in memory for a fork child."""

    mode: str  # as RunConfig's
    trim: int
    output: str  # the target's file: a child's is named after it (dhat-heap.<pid>.json)
    output_dir: str
    ledger: str  # the file each child appends the name of its file to
    package_dir: str  # the directory holding the dhatc package the target runs
    cache_tag: str  # sys.implementation.cache_tag of the target's Python
    native: bool = False  # as RunConfig's
    native_interpreter_frames: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ChildConfig":
        config = cls(**_fields_of(cls, text))
        _check_types(config, {"mode": str, "trim": int, "output": str, "output_dir": str,
                              "ledger": str, "package_dir": str, "cache_tag": str,
                              "native": bool, "native_interpreter_frames": bool})
        if config.mode not in MODES:
            raise ValueError(f"dhatc child configuration: bad mode: {config!r}")
        return config


#: The environment variable that hands a ChildConfig to exec'd children.
CHILD_CONFIG_VARIABLE = "DHATC_FOLLOW_CHILDREN"

MODES = ("heap", "ad-hoc")


def _fields_of(cls: type, text: str) -> Dict[str, Any]:
    fields = json.loads(text)
    if not isinstance(fields, dict) or set(fields) != {f.name for f in dataclasses.fields(cls)}:
        raise ValueError(f"not a {cls.__name__}: {text[:200]!r}")
    return fields


def _check_types(config: object, expect: Dict[str, type]) -> None:
    for name, kind in expect.items():
        value = getattr(config, name)
        # bool is an int: a flag must not pass for a number, nor the reverse.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(
                f"{type(config).__name__}: {name} must be a {kind.__name__}, not {value!r}")
