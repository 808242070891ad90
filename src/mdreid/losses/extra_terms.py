"""Loss terms of your own: plug-ins of the ``LOSS_TERMS`` registry, added to the objective by
``model.loss.extra_terms`` (docs/extending.md).

``@register_loss_term("name")`` on a class (or any callable) that returns the term; each entry
``{term: name, weight: w, ...keywords}`` builds it once with its keywords, and the objective calls it on every
training step as ``term(out, labels) -> scalar``. The train command checks every entry at start-up; a model
that is only evaluated never builds its terms, so evaluating a checkpoint does not need their package.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mdreid.losses.loss_config import ExtraTerm, LossConfig
from mdreid.plugins import Plugin, Registry

LOSS_TERMS = Registry(
    "loss term", "mdreid.losses", "model.loss.extra_terms.<name>.term", "register_loss_term"
)

Term = Callable[..., torch.Tensor]


def register_loss_term(name: str) -> Callable[[Callable[..., Term]], Callable[..., Term]]:
    """Decorator: ``model.loss.extra_terms.<label>.term=<name>`` builds the decorated class (or function)
    with the entry's keywords; what it returns is called as ``term(out, labels)``."""
    return LOSS_TERMS.register(name)


def _checked(label: str, entry: ExtraTerm) -> Plugin:
    """The registered term of one entry, its keywords checked against the signature."""
    where = f"model.loss.extra_terms.{label}"
    plugin = LOSS_TERMS.get(entry.term, key=f"{where}.term")
    LOSS_TERMS.check_call(plugin, where, keywords=entry.kwargs)
    return plugin


def check_loss_terms(config: LossConfig) -> None:
    """The start-up check of ``model.loss.extra_terms``: every name registered, every keyword taken."""
    for label, entry in config.extra().items():
        _checked(label, entry)


def build_loss_terms(config: LossConfig) -> dict[str, tuple[float, Term]]:
    """``{label: (weight, term)}`` of ``model.loss.extra_terms``, each term built once."""
    return {
        label: (entry.weight, _checked(label, entry).target(**entry.kwargs))
        for label, entry in config.extra().items()
    }
