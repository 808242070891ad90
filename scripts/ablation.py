"""The MDReID ablation study: seven variants x seeds on one budget, then mean ± std tables, a chart and JSON.

The planning, running and resuming live in ``analysis.ablation_study`` (``--help`` shows the usage).
"""

import sys

from analysis.ablation_study import main

if __name__ == "__main__":
    sys.exit(main())
