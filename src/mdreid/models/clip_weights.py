"""Loading CLIP visual weights from a local file into an open_clip ``VisionTransformer``.

Accepted files: a plain state dict, ``{'state_dict': ...}`` or safetensors, read as data only (a pickle that
asks to run code is refused). OpenAI's TorchScript archive (``ViT-B-16.pt``) carries TorchScript code, so
only the explicit conversion (``scripts/convert_clip_weights.py``) opens it. Keys may carry ``module.`` and either the full-CLIP ``visual.`` prefix (the text tower is
dropped) or none. The positional table is resized from the checkpoint's grid to the model's grid
**bilinearly with align_corners=False and no antialias**, as the official MDReID code does (open_clip's own
loader is bicubic with antialias, which gives slightly different numbers). Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from safetensors.torch import load_file, save

from mdreid.files.atomic_io import atomic_write
from mdreid.files.safe_load import load_torch_file
from mdreid.process.errors import MDReIDError

log = logging.getLogger(__name__)

KEY = "model.backbone.weights"
CONVERT_HINT = "convert it once with `python scripts/convert_clip_weights.py SRC.pt DST.safetensors`"
_MAX_LISTED = 6


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` entry; ``torch.save`` zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _read_raw(path: Path, allow_torchscript: bool) -> object:
    """The deserialised file: safetensors, a weights-only torch.load, or (``allow_torchscript``, the
    explicit conversion) the state dict of a TorchScript archive."""
    if _is_torchscript(path) and not allow_torchscript:
        raise MDReIDError(
            f"{KEY}={path} is a TorchScript archive, which carries code that loading it would compile; "
            f"{CONVERT_HINT} (do that only for a file you trust, such as OpenAI's ViT-B-16.pt)"
        )
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        if allow_torchscript and _is_torchscript(path):
            log.info("opening the TorchScript archive %s with torch.jit.load, as asked", path)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        return load_torch_file(
            path, KEY, hint=f"a weight file never needs that; {CONVERT_HINT} from a trusted copy"
        )
    except MDReIDError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load of a foreign file raises anything (even KeyError)
        reason = f"{type(err).__name__}: {str(err).splitlines()[0]}" if str(err) else type(err).__name__
        raise MDReIDError(f"{KEY}={path}: not a readable CLIP checkpoint ({reason}); {CONVERT_HINT}") from err


def read_visual_state_dict(path: str | Path, allow_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """The visual-tower state dict stored in ``path``, keys as open_clip's ``VisionTransformer`` names them."""
    file = Path(path)
    if not file.is_file():
        raise MDReIDError(
            f"{KEY}={path}: file not found; point it to a local CLIP ViT checkpoint or set it to null"
        )
    raw = _read_raw(file, allow_torchscript)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise MDReIDError(f"{KEY}={path}: expected a state dict of tensors, got {type(raw).__name__}")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if "conv1.weight" not in state or "positional_embedding" not in state:
        raise MDReIDError(
            f"{KEY}={path}: not a CLIP ViT checkpoint (no visual.conv1.weight / visual.positional_embedding)"
        )
    return state


def resize_positional_embedding(
    table: torch.Tensor, grid: tuple[int, int], source: str | Path
) -> torch.Tensor:
    """``(1 + g*g, D)`` CLIP table -> ``(1 + grid_h*grid_w, D)``: class row kept, square grid resized bilinearly."""
    cls_row, patches = table[:1].float(), table[1:].float()
    if patches.shape[0] == grid[0] * grid[1]:
        return table.float()
    side = math.isqrt(patches.shape[0])
    if side * side != patches.shape[0]:
        raise MDReIDError(
            f"{KEY}={source}: positional table has {patches.shape[0]} patch rows, not a square grid, and the model "
            f"needs {grid[0]}x{grid[1]}; use a checkpoint saved at the same image size or a square one"
        )
    log.info("resizing the positional embedding grid %dx%d -> %dx%d (bilinear)", side, side, *grid)
    image = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([cls_row, image.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], dim=0)


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_clip_visual_weights(visual: VisionTransformer, path: str | Path) -> None:
    """Load ``path`` into ``visual`` strictly; any key or shape mismatch is one readable MDReIDError."""
    state = read_visual_state_dict(path)
    state["positional_embedding"] = resize_positional_embedding(
        state["positional_embedding"], tuple(visual.grid_size), path
    )
    expected = visual.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise MDReIDError(
            f"{KEY}={path}: does not match the backbone architecture "
            f"(missing: {_listed(missing) or 'none'}; unexpected: {_listed(unexpected) or 'none'}); "
            "check model.backbone.name/vision against the checkpoint"
        )
    wrong = sorted(k for k in expected if expected[k].shape != state[k].shape)
    if wrong:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong]
        raise MDReIDError(
            f"{KEY}={path}: shape mismatch ({_listed(shapes)}); check model.backbone.name/vision"
        )
    visual.load_state_dict(state, strict=True)
    log.info("loaded CLIP visual weights from %s", path)


def save_visual_weights(state: Mapping[str, torch.Tensor], dst: str | Path) -> Path:
    """Write a visual-tower state dict as fp32 safetensors with open_clip's ``visual.`` key prefix, atomically.

    This is the one file format every weight source ends in (OpenAI's archive after conversion, the proxy
    foundation), so they all load through :func:`load_clip_visual_weights` alike.
    """
    tensors = {f"visual.{k}": v.detach().float().contiguous().clone() for k, v in state.items()}
    return atomic_write(dst, lambda f: f.write(save(tensors)))


def convert_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Write the visual tower of ``src`` (e.g. OpenAI's TorchScript ``ViT-B-16.pt``) as fp32 safetensors.

    The grid is kept as stored (14x14 for ViT-B-16); resizing happens at load time for the run's image size.
    Calling it is the user's say-so to open a TorchScript archive.
    """
    return save_visual_weights(read_visual_state_dict(src, allow_torchscript=True), dst)
