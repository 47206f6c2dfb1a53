"""``python -m cxrview``: the same as the ``cxrview`` command."""

import sys

from cxrview.cli import main

if __name__ == "__main__":  # worker processes that re-import this module must not start the app
    sys.exit(main())
