"""The model summary a run logs: Lightning's, without a FLOPs column that would read 0, as plain text."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count

log = logging.getLogger(__name__)


def summary_table(columns: list[tuple[str, list[str]]]) -> list[str]:
    """Left-aligned text table, one header line, a rule, one line per row."""
    widths = [max([len(name), *(len(v) for v in values)]) for name, values in columns]
    rows = zip(*(values for _, values in columns), strict=True)
    lines = [" | ".join(name.ljust(w) for (name, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


class ParamSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column and total.

    Lightning counts FLOPs only by running ``example_input_array``, which ReIDModule does not set, so the
    column read 0 everywhere; ``scripts/bench_train.py`` measures the FLOPs of a training step. The table is
    logged as plain text, so it reads the same in a terminal, a SLURM log and the run's ``<task>.log``.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(name, [str(v) for v in values]) for name, values in summary_data if name != "FLOPs"]
        totals = [
            (get_human_readable_count(trainable_parameters), "trainable params"),
            (get_human_readable_count(total_parameters - trainable_parameters), "non-trainable params"),
            (get_human_readable_count(total_parameters), "total params"),
            (get_formatted_model_size(model_size), "estimated params size (MB)"),
            (str(total_training_modes["train"]), "modules in train mode"),
            (str(total_training_modes["eval"]), "modules in eval mode"),
        ]
        table = summary_table(columns)
        lines = [*table, *(f"{value:<10}{label}" for value, label in totals)]
        log.info("model summary\n%s", "\n".join(lines))
