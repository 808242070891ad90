"""Rebuild a sweep's summary table: ``python -m mdreid.sweep_summary DIR`` (DIR = the multirun's sweep folder).

Every multirun writes the table itself (``runtime.sweep_callback``); this command is for a sweep that was
interrupted, or whose jobs ran elsewhere. It writes sweep_summary.csv and sweep_summary.md into DIR and prints
the table. Statuses come from each job folder (docs: README "Sweep tables").
"""

from __future__ import annotations

from mdreid.reporting.sweep_table import print_table, write_summary
from mdreid.runtime.cli_args import OneLineParser
from mdreid.runtime.errors import cli_errors


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python -m mdreid.sweep_summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", metavar="DIR", help="the sweep folder (hydra.sweep.dir) of a multirun")
    args = parser.parse_args(argv)
    print_table(write_summary(args.sweep_dir))


if __name__ == "__main__":
    main()
