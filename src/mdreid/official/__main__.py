"""``python -m mdreid.official``: see :mod:`mdreid.official.cli`."""

from mdreid.official.cli import main

raise SystemExit(main())
