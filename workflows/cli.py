"""The ``slidescope`` command line: the root parser, and how errors become exit statuses.

Each command family lives in :mod:`slidescope.workflows.commands` and registers its own parser.
Exit statuses:

- ``0``: done.
- ``2``: a usage error (argparse) or a :class:`~slidescope.wsi.errors.SlideError` (a slide that
  cannot be read, a bad parameter, an output that may not be written): one line on stderr.
- ``130`` (128 + SIGINT): interrupted (Ctrl-C); one line on stderr, no traceback.
- ``141`` (128 + SIGPIPE): stdout was closed early (``slidescope info X | head -1``); nothing is
  printed, as a program killed by SIGPIPE would do.

Anything else is a bug and propagates as a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from slidescope.wsi.errors import SlideError

from .commands import FAMILIES

__all__ = ["main", "build_parser", "EXIT_ERROR", "EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED"]

#: Exit status of a reported error (the same as argparse's usage errors).
EXIT_ERROR = 2
#: Exit status after Ctrl-C, as the shell reports a SIGINT death.
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Exit status when the reader of stdout went away, as the shell reports a SIGPIPE death.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    """The root parser with every command family's subcommands."""
    from slidescope.wsi.version import slidescope_version

    parser = argparse.ArgumentParser(prog="slidescope", description="Whole-slide pathology image pipeline.")
    parser.add_argument("--version", action="version", version=f"slidescope {slidescope_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.register(commands)
    return parser


def _silence_stdout() -> None:
    """Point stdout at the null device so the interpreter's final flush does not fail again.

    The recipe of the Python documentation (``signal`` module, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (an embedding application, a test)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slidescope`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here for block-buffered output
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SlideError as exc:
        print(f"slidescope {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: one line, as for errors; outputs are staged, never half-written
        print(f"slidescope {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
