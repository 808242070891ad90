"""Zero-shot diagnostic of a visual tower: ``python -m mdreid.pretrain.zero_shot out=FILE [overrides]``.

What a foundation brings before any fine-tuning: the tower's pooled, projected output of each modality image
is the sample's feature of that modality (the single token a baseline compares across modalities), scored
on the test split of a tri-modal benchmark copy with the project's metric (``AnyToAnyReID``, all 49 pairs).
A second score, R->R with every test RGB image (query and gallery) turned to grayscale, tells whether the
tower's RGB features survive the loss of colour, the one property NIR and TIR images share with grayscale
photographs. ``python -m mdreid.pretrain`` runs it after training (``zero_shot.enabled``) and records it in
the provenance JSON; this entry point measures any tower file, e.g. the shipped one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from mdreid.config.cli_overrides import checked_overrides
from mdreid.config.location import config_dir
from mdreid.data.transforms import MEAN, STD
from mdreid.files.atomic_io import atomic_write_json
from mdreid.modalities import MODALITIES, SUBSETS
from mdreid.models.backbone import backbone_config, backbone_kwargs, build_backbone
from mdreid.process.errors import MDReIDError, cli_errors
from mdreid.process.output_dir import check_writable, keep_caches_in

log = logging.getLogger(__name__)

_IDS = ("pid", "camid", "sceneid", "index", "is_query", "is_gallery")


@dataclass(frozen=True)
class ZeroShotSection:
    """The pretrain config's ``zero_shot`` section: whether to score the tower after training, and the benchmark
    copy to score it on (a ``conf/data`` node, instantiated as it is)."""

    enabled: bool = True
    data: Any = None


def grayscale(images: Tensor) -> Tensor:
    """Normalised RGB ``[B, 3, H, W]`` as the same photographs in grayscale (ITU-R 601 luma in all three
    channels), normalised again: what a grayscale camera would have handed the same pipeline."""
    mean = images.new_tensor(MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(STD).view(1, 3, 1, 1)
    gray = TF.rgb_to_grayscale(images * std + mean, num_output_channels=3)
    return (gray - mean) / std


@torch.no_grad()
def modality_features(tower: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """``[B, 3, D]``: the tower's output of each modality image (R, N, T), one forward pass for all three."""
    images = torch.cat([batch[key] for key in MODALITIES])
    return tower(images).unflatten(0, (len(MODALITIES), -1)).transpose(0, 1)


@torch.no_grad()
def score_tower(tower: nn.Module, batches: Iterable[Mapping[str, Tensor]], junk: str) -> dict[str, Any]:
    """The tower's zero-shot 49-pair table and its R->R on grayscale RGB (both sides), in percent.

    Features go to the metric as shared features (``sh``), so cross-modal pairs compare them directly.
    """
    from mdreid.metrics import AnyToAnyReID  # imports matplotlib: after the CLI has placed its caches

    was_training = tower.training
    tower.eval()
    colour = AnyToAnyReID(pairs="all", junk=junk)
    gray = AnyToAnyReID(pairs=["R->R"], junk=junk)
    try:
        for batch in batches:
            ids = {k: batch[k] for k in _IDS}
            colour.update(sp=None, sh=modality_features(tower, batch), present=batch["present"], **ids)
            rgb_only = torch.zeros_like(batch["present"], dtype=torch.bool)
            rgb_only[:, 0] = batch["present"][:, 0]
            gray_rgb = tower(grayscale(batch["RGB"]))
            sh = torch.stack([gray_rgb, torch.zeros_like(gray_rgb), torch.zeros_like(gray_rgb)], dim=1)
            gray.update(sp=None, sh=sh, present=rgb_only, **ids)
        table, gray_row = colour.compute(), gray.compute().row("R", "R")
    finally:
        tower.train(was_training)
    return {
        "mAP": {f"{r['query']}->{r['gallery']}": round(r["mAP"], 2) for r in table.rows},
        "R1": {f"{r['query']}->{r['gallery']}": round(r["R1"], 2) for r in table.rows},
        "groups": {k: round(v, 2) for k, v in table.groups.items()},
        "grayscale_R->R": {"mAP": round(gray_row["mAP"], 2), "R1": round(gray_row["R1"], 2)},
        "num_query": table.row("R", "R")["num_query"],
    }


def zero_shot(weights: str | Path, backbone: Mapping[str, Any], data: DictConfig) -> dict[str, Any]:
    """Score the tower file ``weights`` (architecture ``backbone``, as pretraining built it) zero-shot on the
    test split of the benchmark copy ``data`` (a ``conf/data`` node; a synthetic copy is generated on first use)."""
    if not Path(weights).is_file():
        raise MDReIDError(
            f"zero-shot diagnostic: tower file {weights} not found; pass out=<tower .safetensors>"
        )
    datamodule = instantiate(data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("test")
    kwargs = backbone_kwargs(backbone_config({**backbone, "weights": str(weights)}, "backbone"))
    tower = build_backbone(**kwargs, image_size=datamodule.image_size)
    record = score_tower(tower, datamodule.test_dataloader(), datamodule.junk_rule)
    record["data"] = {"dataset": data.dataset, **OmegaConf.to_container(data.synth or {}, resolve=True)}
    return record


def markdown(record: Mapping[str, Any], metric: str = "mAP") -> str:
    """The 7 x 7 table of ``record[metric]`` (rows: query subset, columns: gallery subset) as Markdown."""
    lines = [f"{metric} (%) | " + " | ".join(SUBSETS), "---|" + "|".join("---:" for _ in SUBSETS)]
    for q in SUBSETS:
        cells = " | ".join(f"{record[metric][f'{q}->{g}']:.1f}" for g in SUBSETS)
        lines.append(f"**{q}** | {cells}")
    gray = record["grayscale_R->R"][metric]
    lines.append(f"\nR->R {metric} on grayscale RGB: {gray:.1f} (in colour: {record[metric]['R->R']:.1f})")
    return "\n".join(lines)


@cli_errors
def run(cfg: DictConfig) -> dict[str, Any]:
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    keep_caches_in(cfg.paths.output_dir)
    record = zero_shot(cfg.out, OmegaConf.to_container(cfg.backbone, resolve=True), cfg.zero_shot.data)
    record["file"] = str(cfg.out)
    path = Path(cfg.paths.output_dir) / "zero_shot.json"
    atomic_write_json(path, record)
    print(markdown(record))
    log.info("wrote %s", path)
    return record


@checked_overrides("pretrain.yaml")
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="pretrain.yaml")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
