"""The official epoch-level schedule: timm's CosineLRScheduler, stepped at the START of each 1-based epoch.

Official quirks kept on purpose (docs/method.md §4.4, quirks Q5-Q6 in §7): one ``warmup_lr_init``
(0.1 x BASE_LR) shared by all groups, so the encoder LR warms *down*; multiplicative LR noise drawn per epoch
from a generator seeded with ``noise_seed + epoch``. Either can be switched off in ``model.schedule``.
"""

from __future__ import annotations

from dataclasses import dataclass

from timm.scheduler import CosineLRScheduler
from torch.optim import Optimizer


@dataclass(frozen=True)
class ScheduleConfig:
    epochs: int = 50
    warmup_epochs: int = 10
    warmup_lr_factor: float = 0.1  # warmup starts at this x BASE_LR, for every group (official)
    min_lr_factor: float = 0.001  # lr_min = this x BASE_LR
    noise: bool = True
    noise_pct: float = 0.67
    noise_std: float = 1.0
    noise_seed: int = 42


def build_scheduler(optimizer: Optimizer, base_lr: float, cfg: ScheduleConfig) -> CosineLRScheduler:
    """timm cosine schedule with the official arguments; call ``.step(epoch)`` with 1-based epochs."""
    return CosineLRScheduler(
        optimizer,
        t_initial=cfg.epochs,
        lr_min=cfg.min_lr_factor * base_lr,
        cycle_limit=1,
        warmup_t=cfg.warmup_epochs,
        warmup_lr_init=cfg.warmup_lr_factor * base_lr,
        warmup_prefix=False,
        t_in_epochs=True,
        noise_range_t=(0, cfg.epochs) if cfg.noise else None,
        noise_pct=cfg.noise_pct,
        noise_std=cfg.noise_std,
        noise_seed=cfg.noise_seed,
    )
