"""``python -m mdreid.index``: see mdreid.index.cli."""

import sys

from mdreid.index.cli import main

sys.exit(main())
