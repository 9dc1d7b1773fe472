"""What ``dhatc run``'s launcher (:mod:`dhatc._cmd_run`) tells the bootstrap
(:mod:`dhatc._bootstrap`), which runs in the interpreter the launcher
re-executes: one frozen dataclass, serialised as JSON on the way (the first
argument after the bootstrap's ``-c`` program)."""

from __future__ import annotations

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        """The config :meth:`to_json` wrote; ValueError for anything else."""
        fields: Dict[str, Any] = json.loads(text)
        if not isinstance(fields, dict) or set(fields) != set(cls.__dataclass_fields__):
            raise ValueError(f"not a dhatc run configuration: {text[:200]!r}")
        config = cls(**fields)
        config._check()
        return config

    def _check(self) -> None:
        expect = {"kind": str, "target": str, "mode": str, "output": str, "trim": int,
                  "output_dir": str, "preloaded": bool}
        for name, kind in expect.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"dhatc run configuration: {name} must be a {kind.__name__}")
        if not (self.ld_preload is None or isinstance(self.ld_preload, str)):
            raise ValueError("dhatc run configuration: ld_preload must be a str or None")
        if self.kind not in TARGET_KINDS or self.mode not in ("heap", "ad-hoc"):
            raise ValueError(f"dhatc run configuration: bad kind or mode: {self!r}")
