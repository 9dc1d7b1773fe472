"""The command line: ``python -m dhatc COMMAND ...`` and the ``dhatc`` script.

One argparse parser with a subcommand per module ``dhatpy/_cmd_NAME.py``
(``-`` in NAME is ``_`` in the module's name), listed in :data:`COMMANDS`.
A command module exposes::

    HELP: str                                    # one line, shown in `dhatc --help`
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int     # the exit status

and, for a command whose arguments end with another program's command line
(``run``: everything after the target belongs to the target), optionally::

    def split_passthrough(argv: List[str]) -> Tuple[List[str], object]

which returns the arguments for argparse and what follows them, already
parsed; the latter is set on the namespace as ``args.passthrough``.

Errors a user can fix are raised as :class:`dhatc._errors.CommandError`:
from ``split_passthrough`` they are shown as argparse shows a bad command line
(the usage, then ``dhatc COMMAND: error: MESSAGE``), from ``run`` as that one
line; both exit 2.  A broken pipe on stdout (``dhatc ... | head -1``) ends
the command quietly; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Dict, Optional, Sequence, Tuple

from ._errors import CommandError

PROG = "dhatc"

# The commands, in the order `dhatc --help` lists them; one line each.
COMMANDS = (
    "run",
    "preload-path",
    "view",
    "flamegraph",
    "export",
    "merge",
    "report",
    "diff",
)


def command_module(name: str) -> ModuleType:
    """The module implementing command `name`."""
    return importlib.import_module(f"._cmd_{name.replace('-', '_')}", __package__)


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own parser by name."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="DHAT-style heap profiling for Python; "
        "'dhatc COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True
    subparsers: Dict[str, argparse.ArgumentParser] = {}
    for name in COMMANDS:
        module = command_module(name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        subparsers[name] = sub
    return parser, subparsers


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m dhatc`` and of the ``dhatc`` script; returns
    the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = "?"
    try:
        parser, subparsers = build_parser()
        passthrough: object = None
        if args and args[0] in subparsers:
            command = args[0]
            split = getattr(command_module(command), "split_passthrough", None)
            if split is not None:
                try:
                    own, passthrough = split(args[1:])
                except CommandError as e:
                    subparsers[command].error(str(e))  # usage, then the message; exits 2
                args = [command, *own]
        namespace, extra = parser.parse_known_args(args)
        if extra:  # said by the command's parser, which names the command
            subparsers[namespace.command].error(f"unrecognized arguments: {' '.join(extra)}")
        namespace.passthrough = passthrough
        status = int(command_module(namespace.command).run(namespace))
        sys.stdout.flush()  # a broken pipe shows here, not at interpreter exit
        return status
    except CommandError as e:
        print(f"{PROG} {command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _after_broken_pipe()
    except KeyboardInterrupt:
        return 130


def _after_broken_pipe() -> int:
    """The reader went away (``| head -1``): say nothing, and keep the
    interpreter's final flush of stdout from failing again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 1  # as python exits on EPIPE (see the signal module's docs)
