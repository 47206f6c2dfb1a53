"""Exit codes and the one error printer shared by every ``cxrview`` subcommand.

A subcommand either returns an exit code or raises; :func:`report` turns the errors a
user can cause (a missing workspace, a refused activation, an unreadable file, a bad
filter) into one ``cxrview: error: …`` line and exit code 2. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 2  # bad input or a refused operation; the message says which
EXIT_INTERRUPTED = 130  # Ctrl+C, as a shell reports SIGINT


def print_error(message: str) -> int:
    """``cxrview: error: …`` on stderr; returns :data:`EXIT_FAILED` for ``return print_error(…)``."""
    print(f"cxrview: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def _user_errors() -> tuple[type[BaseException], ...]:
    # Imported here, not at module level: `cxrview info` must not pay for the registry or the
    # workspace modules, and only a failing command needs the classes.
    from cxrview.core.errors import ImageLoadError
    from cxrview.core.workspace import WorkspaceError
    from cxrview.finetune_orchestration import FinetuneError
    from cxrview.inference.card import BundleError
    from cxrview.inference.registry import RegistryError

    return (ImageLoadError, WorkspaceError, RegistryError, BundleError, FinetuneError, ValueError, OSError)


def describe(exc: BaseException) -> str:
    """The one line a user sees for ``exc``; an OSError names its file and the system's reason."""
    if isinstance(exc, OSError):
        return f"{getattr(exc, 'filename', '') or ''} {exc.strerror or exc}".strip()
    return str(exc)


def report(exc: Exception) -> int:
    """Print a user error as one line and return :data:`EXIT_FAILED`; re-raise anything else."""
    if not isinstance(exc, _user_errors()):
        raise exc
    return print_error(describe(exc))
