"""How a command reports a user error: one line on stderr, exit status 2. Every subcommand is
`guarded` (so that it holds whether `cli.main` or a parser of its own runs it), and `cli.main`
reports the same way; what counts as a user error is `simulator.errors.UserError`, the root of
the user errors of every package.
"""
from __future__ import annotations

import sys

from simulator.errors import UserError

EXIT_USAGE = 2


def user_error_exit(e: UserError) -> int:
    print(f"mvpfarm: error: {e}", file=sys.stderr)
    return EXIT_USAGE


def guarded(fn):
    """`fn(args)` with its user errors printed as one line and returned as exit status 2."""
    def run(args) -> int:
        try:
            return fn(args)
        except UserError as e:
            return user_error_exit(e)
    return run
