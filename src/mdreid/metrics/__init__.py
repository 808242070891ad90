"""Any-to-any ReID evaluation: the ranking metric, pair distances from cached features, and the Metric."""

from mdreid.metrics.any_to_any import AnyToAnyReID
from mdreid.metrics.evaluation import Evaluation
from mdreid.metrics.functional import rank_metrics
from mdreid.metrics.pair_selection import PairSelection
from mdreid.metrics.pair_similarity import PairDistances, plan_pair
from mdreid.metrics.results import AnyToAnyResult

__all__ = [
    "AnyToAnyReID",
    "AnyToAnyResult",
    "Evaluation",
    "PairDistances",
    "PairSelection",
    "plan_pair",
    "rank_metrics",
]
