"""Reading an official MDReID ``.pth`` into a ``ReIDModule``: renamed tensors (``mdreid.official.layout``),
the model their shapes describe, and a strict fill that names any contradiction before any key list."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mdreid.checkpoint import Checkpoint, resolve_checkpoint
from mdreid.checkpoint.state import key_mismatch, with_run_heads
from mdreid.metrics.eval_config import EvalConfig
from mdreid.module import ReIDModule
from mdreid.official.layout import Converted, describe_mismatch, official_name, resolve_image_size
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)


def official_module(
    converted: Converted,
    image_size: Sequence[int] | None,
    source: str,
    evaluation: EvalConfig | Mapping[str, Any] | None = None,
    junk: str = "camera",
) -> ReIDModule:
    """The ``ReIDModule`` an official checkpoint describes (sizes from its tensors), weights not yet loaded."""
    layout = converted.layout
    model = {
        "backbone": layout.backbone(),
        "image_size": resolve_image_size(layout, image_size, source),
        "mdl": {"decoupled": True, "tie_tokens": layout.tie_tokens},
    }
    return ReIDModule.from_config(
        model,
        num_classes=layout.num_classes,
        num_cameras=layout.num_cameras,
        junk=junk,
        evaluation=evaluation,
    )


def load_official(model: ReIDModule, converted: Converted, source: str, new_heads: bool = False) -> None:
    """Fill ``model`` from an official checkpoint; sizes that contradict it are named before any key list.
    ``new_heads`` (fine-tuning) keeps the model's identity classifiers where the identity counts differ."""
    net, layout = model.net, converted.layout
    if not net.decoupled:
        raise MDReIDError(f"{source} holds the decoupled MDReID model; evaluate it with model=mdreid")
    if (net.mdl.shared_token is None) != layout.tie_tokens:
        raise MDReIDError(
            f"{source}: its shared token is {'' if layout.tie_tokens else 'not '}tied to the class token; "
            f"set model.mdl.tie_tokens={str(layout.tie_tokens).lower()}"
        )
    grid = net.mdl.encoder.positional_embedding.shape[0] - net.mdl.num_tokens
    classes = layout.num_classes if new_heads else model.hparams["num_classes"]
    contradiction = describe_mismatch(layout, classes, model.hparams["num_cameras"], grid)
    if contradiction:
        raise MDReIDError(f"checkpoint {source} does not fit the configured model: {contradiction}")
    state = with_run_heads(model.state_dict(), converted.state, source) if new_heads else converted.state
    mismatch = key_mismatch(model.state_dict(), state, official_name)
    if mismatch:
        raise MDReIDError(
            f"checkpoint {source} does not fit the configured model ({mismatch}); "
            "use the experiment/model overrides of the benchmark it was trained on"
        )
    model.load_state_dict(state, strict=True)
    log.info(
        "official checkpoint %s: %d tensors loaded; dropped %d that never enter the loss or repeat another: %s",
        source,
        len(converted.state),
        len(converted.unused),
        ", ".join(converted.unused) or "none",
    )


# the converter is no Hydra command: a file is vouched for with its flag
CONVERT_TRUST_HINT = "if you trust the file's source, convert it with --trust-checkpoint (that runs whatever code the file carries)"


def official_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """The official file at ``path``; an mdreid checkpoint there is pointed back to its own use."""
    ckpt = resolve_checkpoint(path, "SRC", trust, CONVERT_TRUST_HINT)
    if not ckpt.official:
        raise MDReIDError(f"{path} is already an mdreid checkpoint; use it as is (ckpt_path= or init_from=)")
    return ckpt


def read_file(path: str | Path, trust: bool = False) -> Converted:
    """The official file at ``path``, renamed."""
    return official_checkpoint(path, trust).converted


def load_official_checkpoint(
    path: str | Path, image_size: Sequence[int] | None = None, trust: bool = False
) -> ReIDModule:
    """The ``ReIDModule`` of an official MDReID ``.pth``, in eval mode.

    Identities, cameras and the tower's sizes come from the tensors; the input size (H, W) from the benchmark
    those identify, or ``image_size`` for a model trained elsewhere. ``net.extract`` then gives the official
    model's per-modality specific and shared features. The file is read as data, never run as code, unless
    ``trust`` says its source is trusted.
    """
    converted = read_file(path, trust)
    model = official_module(converted, image_size, str(path))
    load_official(model, converted, str(path))
    return model.eval()
