"""Rebuild a sweep's summary table: ``python -m mdreid.sweep_summary DIR`` (DIR = the multirun's sweep folder).

Every multirun writes the table itself (``runtime.sweep_callback``); this command is for a sweep that was
interrupted, or whose jobs ran elsewhere, or to compare with another reference. It writes sweep_summary.md,
sweep_summary.csv and sweep_configs.csv into DIR and prints the tables. Statuses come from each job folder (docs: README "Sweep tables").
"""

from __future__ import annotations

from mdreid.config.cli_args import OneLineParser
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.reporting.sweep_report import print_table, write_summary


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python -m mdreid.sweep_summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", metavar="DIR", help="the sweep folder (hydra.sweep.dir) of a multirun")
    parser.add_argument(
        "--reference",
        metavar="K=V,...",
        help="the configuration the best one is compared with over paired seeds "
        "(e.g. model.loss.rol_weight=0,model.loss.kdl_weight=0); default: the runner-up",
    )
    args = parser.parse_args(argv)
    table = write_summary(args.sweep_dir, reference=args.reference)
    print_table(table)
    if table.reference_error:
        raise MDReIDError(table.reference_error)


if __name__ == "__main__":
    main()
