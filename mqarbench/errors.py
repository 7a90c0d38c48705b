"""The one exception type for mistakes a user can fix, and how an entry point reports it."""

import sys


class UserError(Exception):
    """A problem the user caused and can fix: bad spec, unknown model, corrupt file, bad flag.

    The CLI prints ``str(err)`` as a single line and exits with ``exit_code``; no traceback.
    The message names the file, field or flag and says how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def report(err: UserError) -> int:
    """Print ``err`` as the single line a user sees (stderr, no traceback); its exit code."""
    print(f"error: {err}", file=sys.stderr)
    return err.exit_code
