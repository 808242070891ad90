"""``python -m mdreid.explain``: see mdreid.explain.cli."""

import sys

from mdreid.explain.cli import main

sys.exit(main())
