"""Put first on PYTHONPATH for the children of ``dhatc run --follow-children``
(see dhatc/_follow.py): profiles this Python process, then hands over to the
sitecustomize it would have imported without dhatc.  Binds no names."""


def _start(text: str) -> None:
    import json
    import sys

    config = json.loads(text)
    if config.get("cache_tag") != sys.implementation.cache_tag:
        return  # another Python than the target's: dhatc is not built for it
    package_dir = config["package_dir"]
    sys.path.insert(0, package_dir)  # the target's dhatc, wherever this child looks
    try:
        from dhatc import _follow
    finally:
        sys.path.remove(package_dir)
    _follow.start_in_exec_child(text)


def _dhatc_follow() -> None:
    import importlib
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    # This directory is for finding this file only: off sys.path again.
    sys.path[:] = [p for p in sys.path if not (p and os.path.abspath(p) == here)]
    text = os.environ.get("DHATC_FOLLOW_CHILDREN")
    if text:
        try:
            _start(text)
        except Exception as e:  # never stop the child from starting
            print(f"dhat: warning: not profiling process {os.getpid()}: {e}", file=sys.stderr)
    # Python imports one sitecustomize: the next one on sys.path gets its turn.
    me = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError as e:
        if e.name != "sitecustomize":
            raise
    finally:
        if me is not None:
            sys.modules.setdefault("sitecustomize", me)


_dhatc_follow()
del _dhatc_follow, _start
