"""The ``cxrview`` command line: one module per group of subcommands, one dispatch table
(:mod:`cxrview.cli.dispatch`), one error printer (:mod:`cxrview.cli.errors`).

Qt-free except for launching the GUI and drawing ``render --overlay`` with the viewer's
own layers (import contracts in pyproject.toml).
"""

from cxrview.cli.dispatch import main

__all__ = ["main"]
