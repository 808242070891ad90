"""Seeds as a distribution: configurations, mean ± std (n), and the paired-seed difference, by hand."""

from __future__ import annotations

import pytest
from scipy import stats

from mdreid.process.errors import MDReIDError
from mdreid.reporting.seed_groups import (
    Stat,
    configuration_label,
    find_reference,
    group_jobs,
    paired_difference,
    parse_reference,
    rank_groups,
)

JOBS = [
    ({"w": "1", "seed": "1"}, "1", {"s": 80.0}),
    ({"w": "1", "seed": "2"}, "2", {"s": 84.0}),
    ({"w": "1", "seed": "3"}, "3", {"s": 85.0}),
    ({"w": "0", "seed": "1"}, "1", {"s": 79.0}),
    ({"w": "0", "seed": "2"}, "2", {"s": 82.0}),
    ({"w": "0", "seed": "3"}, "3", {"s": 86.0}),
    ({"w": "2", "seed": "1"}, "1", {"s": 90.0}),  # one seed only
]


def test_configurations_by_hand() -> None:
    groups = rank_groups(group_jobs(JOBS), "s", descending=True)
    assert [g.overrides for g in groups] == [{"w": "2"}, {"w": "1"}, {"w": "0"}]
    assert groups[0].stat("s") == Stat(90.0, None, 1)  # one value: no spread
    one = groups[1].stat("s")
    assert (one.mean, one.n) == (83.0, 3) and one.std == pytest.approx(2.6457513, abs=1e-6)  # sqrt(7)
    assert one.text() == "83.00 ± 2.65 (n=3)" and groups[0].stat("s").text() == "90.00 (n=1)"
    assert (
        configuration_label({"w": "1", "seed": "3"}) == "w=1"
        and configuration_label({"seed": "1"}) == "(defaults)"
    )


def test_paired_difference_is_scipys_t_interval() -> None:
    groups = {g.overrides["w"]: g for g in group_jobs(JOBS)}
    diff = paired_difference(groups["1"], groups["0"], "s")
    low, high = stats.ttest_rel([80, 84, 85], [79, 82, 86]).confidence_interval(0.95)
    assert (diff.mean, diff.n) == (pytest.approx(2 / 3), 3)
    assert (diff.low, diff.high) == (pytest.approx(low), pytest.approx(high))
    single = paired_difference(groups["2"], groups["0"], "s")  # one paired seed: no interval
    assert (single.mean, single.n, single.low) == (11.0, 1, None) and "2 or more" in single.text()


def test_a_reference_names_exactly_one_configuration() -> None:
    groups = group_jobs(JOBS)
    assert find_reference(groups, parse_reference("w=0")).overrides == {"w": "0"}
    with pytest.raises(MDReIDError, match="matches 0 configurations"):
        find_reference(groups, parse_reference("w=7"))
    with pytest.raises(MDReIDError, match="key=value pairs"):
        parse_reference("w")
