"""``python -m mdreid.data``: see mdreid.data.cli."""

import sys

from mdreid.data.cli import main

sys.exit(main())
