"""The modality-gap figure: t-SNE of the specific and the shared features of a few identities.

Each (sample, present modality) is one point, coloured by identity and shaped by modality, and every
modality of a panel is embedded jointly, so the figure shows whether features cluster by identity (shared
features should) or by modality (specific features may). Features are L2-normalised first, since the metric
compares them by cosine. Fit on the CPU with OpenMP held to one thread: Barnes-Hut t-SNE on a few hundred
points is quick alone but crawls when its threads compete with a busy machine (10x measured), and one
thread keeps the result the same for a seed everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch import Tensor

from mdreid.modalities import MODALITIES, NUM_MODALITIES
from mdreid.process.errors import MDReIDError

MARKERS: tuple[str, ...] = ("o", "s", "^")  # R, N, T
PANELS: tuple[tuple[str, str], ...] = (("sp", "specific (sp)"), ("sh", "shared (sh)"))
_MAX_PERPLEXITY = 30.0
_MIN_POINTS = 4


def pick_identities(samples: Mapping[str, Tensor | None], num_ids: int, max_per_id: int) -> Tensor:
    """Sample positions of the ``num_ids`` pids with the most samples (ties: smaller pid), at most
    ``max_per_id`` each (the first in samples order), grouped by pid."""
    pid = samples["pid"].cpu()
    pids, counts = torch.unique(pid, sorted=True, return_counts=True)
    chosen = pids[torch.sort(-counts, stable=True).indices[:num_ids]]
    return torch.cat([torch.nonzero(pid == p).flatten()[:max_per_id] for p in chosen.tolist()])


def _perplexity(num_points: int) -> float:
    """sklearn's default 30 where there are enough points, else about a third of them (must be < n)."""
    return min(_MAX_PERPLEXITY, max(1.0, (num_points - 1) / 3))


def _embed(features: Tensor, seed: int) -> np.ndarray:
    x = torch.nn.functional.normalize(features.float(), dim=-1).numpy()
    tsne = TSNE(n_components=2, init="pca", perplexity=_perplexity(len(x)), random_state=seed)
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)


def tsne_figure(
    samples: Mapping[str, Tensor | None], num_ids: int = 10, seed: int = 0, max_per_id: int = 20
) -> Figure:
    """One panel per feature kind the model has (sp, sh), ``num_ids`` x ``max_per_id`` x 3 points at most."""
    if num_ids < 1 or max_per_id < 1:
        raise MDReIDError(f"t-SNE needs num_ids >= 1 and max_per_id >= 1, got {num_ids} and {max_per_id}")
    positions = pick_identities(samples, num_ids, max_per_id)
    present = samples["present"].cpu()[positions]
    sample_idx, modality = torch.nonzero(present, as_tuple=True)  # one point per present modality
    if len(sample_idx) < _MIN_POINTS:
        raise MDReIDError(
            f"t-SNE needs at least {_MIN_POINTS} (sample, modality) points, got {len(sample_idx)}; "
            "evaluate on more samples or raise num_ids / max_per_id"
        )
    pid = samples["pid"].cpu()[positions][sample_idx]
    ids = torch.unique(pid, sorted=True).tolist()
    colours = colormaps["tab10" if len(ids) <= 10 else "turbo"].resampled(max(len(ids), 2))
    panels = [(key, title) for key, title in PANELS if samples.get(key) is not None]
    fig = Figure(figsize=(5.0 * len(panels) + 1.6, 5.0), layout="constrained")
    for k, (key, title) in enumerate(panels):
        xy = _embed(samples[key].cpu()[positions][sample_idx, modality], seed)
        ax = fig.add_subplot(1, len(panels), k + 1)
        for i, p in enumerate(ids):
            for m in range(NUM_MODALITIES):
                sel = ((pid == p) & (modality == m)).numpy()
                if sel.any():
                    ax.scatter(xy[sel, 0], xy[sel, 1], color=colours(i), marker=MARKERS[m], s=16, alpha=0.85)
        ax.set_title(f"t-SNE of {title} features")
        ax.set_xticks([])
        ax.set_yticks([])
    modality_handles = [
        Line2D([], [], color="0.4", marker=MARKERS[m], linestyle="", label=MODALITIES[m])
        for m in range(NUM_MODALITIES)
    ]
    id_handles = [
        Line2D([], [], color=colours(i), marker="o", linestyle="", label=f"id {p}") for i, p in enumerate(ids)
    ]
    fig.legend(handles=modality_handles + id_handles, loc="outside right center", fontsize=8)
    fig.suptitle(f"{len(ids)} identities, {len(positions)} samples: colour = identity, marker = modality")
    return fig
