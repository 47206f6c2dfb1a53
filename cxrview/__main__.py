import sys

from cxrview.cli import main

sys.exit(main())
