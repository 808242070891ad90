"""``python -m mdreid.app``: see mdreid.app.cli."""

import sys

from mdreid.app.cli import main

sys.exit(main())
