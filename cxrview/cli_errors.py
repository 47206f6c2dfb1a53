"""Exit codes and the one error format shared by every ``cxrview`` subcommand."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 2  # bad input or a refused operation; the message says which


def print_error(message: str) -> int:
    """``cxrview: error: …`` on stderr; returns :data:`EXIT_FAILED` for ``return print_error(…)``."""
    print(f"cxrview: error: {message}", file=sys.stderr)
    return EXIT_FAILED
