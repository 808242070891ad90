"""The state-dict layout of the official MDReID code and its mapping onto ``ReIDModule`` (docs/official_checkpoints.md).

The released ``.pth`` files hold the official ``MDReID`` model as its recipe builds it: the CLIP visual tower
under ``BACKBONE.base.`` (open_clip's own key names), the camera table ``BACKBONE.cv_embed``, BNNeck heads
``bottleneck_{r,n,t,s}`` / ``classifier_{r,n,t,s}``, and three more heads ``*_{rs,ns,ts}`` whose scores are
computed but never enter the loss, so their weights never trained. The shared token ``add_image_token`` is
the same parameter as ``class_embedding`` in the official code (saved twice, equal); a file where they differ
is read as the untied model (``model.mdl.tie_tokens=false``).

Nothing here builds a model: this module renames tensors, infers the sizes they imply and says, key by key,
what does not fit. ``mdreid.official.reader`` builds and fills the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from mdreid.process.errors import MDReIDError

TOWER = "BACKBONE.base."
_LISTED = 4  # keys named per kind in an error
_PAIRS: tuple[tuple[str, str], ...] = (
    (f"{TOWER}add_image_token", "net.mdl.shared_token"),  # only when untied; a tied copy is dropped
    (TOWER, "net.mdl.encoder."),
    ("BACKBONE.cv_embed", "net.mdl.cv_embed"),
    *((f"bottleneck_{tag}.", f"net.heads_sp.{i}.bn.") for i, tag in enumerate("rnt")),
    *((f"classifier_{tag}.", f"net.heads_sp.{i}.classifier.") for i, tag in enumerate("rnt")),
    ("bottleneck_s.", "net.head_sh.bn."),
    ("classifier_s.", "net.head_sh.classifier."),
)
# heads of the official "E-loss" branch: their scores are returned but no loss reads them
_UNUSED = re.compile(r"^(bottleneck|classifier)_(rs|ns|ts)\.")
# tensors the sizes are read from; without them the file is not an official MDReID model
_CORE = tuple(f"{TOWER}{k}" for k in ("conv1.weight", "class_embedding", "positional_embedding", "proj")) + (
    "BACKBONE.cv_embed",
    "classifier_r.weight",
)


@dataclass(frozen=True)
class Release:
    """What a released checkpoint of one benchmark looks like: training identities, cameras, input size."""

    num_classes: int
    num_cameras: int
    image_size: tuple[int, int]


# Training identities and cameras of each benchmark (docs/datasets.md) and the official input size.
RELEASES: dict[str, Release] = {
    "rgbnt201": Release(171, 4, (256, 128)),
    "rgbnt100": Release(50, 8, (128, 256)),
    "msvr310": Release(155, 8, (128, 256)),
}


@dataclass(frozen=True)
class OfficialLayout:
    """The sizes an official state dict implies."""

    width: int
    layers: int
    patch_size: int
    embed_dim: int
    mlp_ratio: float
    num_classes: int
    num_cameras: int
    grid_tokens: int  # patch positions: rows of the positional table minus the two prefix tokens
    tie_tokens: bool

    def benchmark(self) -> str | None:
        """The benchmark whose training identities and cameras these are, if any."""
        sig = (self.num_classes, self.num_cameras)
        return next((n for n, r in RELEASES.items() if (r.num_classes, r.num_cameras) == sig), None)

    def backbone(self) -> dict[str, object]:
        """The ``model.backbone`` config of this tower; CLIP's convention sets one head per 64 channels."""
        vision = {
            "width": self.width,
            "layers": self.layers,
            "heads": max(1, self.width // 64),
            "patch_size": self.patch_size,
            "mlp_ratio": self.mlp_ratio,
        }
        return {
            "name": "ViT-B-16",
            "weights": None,
            "quick_gelu": True,
            "embed_dim": self.embed_dim,
            "vision": vision,
        }


@dataclass(frozen=True)
class Converted:
    """An official state dict renamed to ``ReIDModule`` keys, with what was dropped and where each key came from."""

    layout: OfficialLayout
    state: dict[str, torch.Tensor]
    origin: dict[str, str]  # mdreid key -> official key
    unused: tuple[str, ...]  # official keys dropped (untrained heads, the tied token copy)


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def _swap(key: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    for old, new in pairs:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return None


def official_name(mdreid_key: str) -> str:
    """The official key an mdreid key comes from (for error messages); the key itself if none does."""
    return _swap(mdreid_key, ((new, old) for old, new in _PAIRS)) or mdreid_key


def _layout(state: Mapping[str, torch.Tensor], tie_tokens: bool) -> OfficialLayout:
    conv = state[f"{TOWER}conv1.weight"]
    width = int(conv.shape[0])
    layers = sum(
        1
        for k in state
        if re.fullmatch(rf"{re.escape(TOWER)}transformer\.resblocks\.\d+\.attn\.in_proj_weight", k)
    )
    fc = state.get(f"{TOWER}transformer.resblocks.0.mlp.c_fc.weight")
    return OfficialLayout(
        width=width,
        layers=layers,
        patch_size=int(conv.shape[-1]),
        embed_dim=int(state[f"{TOWER}proj"].shape[1]),
        mlp_ratio=float(fc.shape[0]) / width if fc is not None else 4.0,
        num_classes=int(state["classifier_r.weight"].shape[0]),
        num_cameras=int(state["BACKBONE.cv_embed"].shape[0]),
        grid_tokens=int(state[f"{TOWER}positional_embedding"].shape[0]) - 2,
        tie_tokens=tie_tokens,
    )


def convert_official(state: Mapping[str, torch.Tensor], source: str) -> Converted:
    """Rename an official state dict to ``ReIDModule`` keys; a file of another model family fails with the
    keys that give it away (official keys it lacks, keys the official model does not have)."""
    unexpected = [k for k in state if _UNUSED.match(k) is None and _swap(k, _PAIRS) is None]
    missing = [k for k in _CORE if k not in state]
    if missing or unexpected:
        parts = [
            f"missing {_listed(missing)}" if missing else "",
            f"unexpected {_listed(unexpected)}" if unexpected else "",
        ]
        raise MDReIDError(
            f"{source} is not an official MDReID checkpoint ({'; '.join(p for p in parts if p)}); "
            "expected the state dict of the official MDReID model (keys BACKBONE.base.*, classifier_r.weight, ...)"
        )
    token, cls = state.get(f"{TOWER}add_image_token"), state[f"{TOWER}class_embedding"]
    tied = token is None or (token.numel() == cls.numel() and torch.equal(token.reshape(cls.shape), cls))
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused: list[str] = []
    for key, value in state.items():
        target = None if _UNUSED.match(key) else _swap(key, _PAIRS)
        if target is None or (target == "net.mdl.shared_token" and tied):
            unused.append(key)
            continue
        renamed[target] = value.reshape(cls.shape) if target == "net.mdl.shared_token" else value
        origin[target] = key
    return Converted(_layout(state, tied), renamed, origin, tuple(sorted(unused)))


def resolve_image_size(
    layout: OfficialLayout, image_size: Iterable[int] | None, source: str
) -> tuple[int, int]:
    """The (H, W) input size: ``image_size`` checked against the positional grid, or else the official size
    of the benchmark the identities and cameras identify (the grid's row count alone cannot tell 256x128
    from 128x256)."""
    if image_size is None:
        name = layout.benchmark()
        if name is None:
            raise MDReIDError(
                f"{source}: {layout.num_classes} identities and {layout.num_cameras} cameras match no released "
                f"benchmark, so the input size behind its {layout.grid_tokens} patch positions is unknown; "
                "give the image size (image_size=[H,W])"
            )
        image_size = RELEASES[name].image_size
    h, w = (int(v) for v in image_size)
    p = layout.patch_size
    if h % p or w % p or (h // p) * (w // p) != layout.grid_tokens:
        raise MDReIDError(
            f"{source}: its positional table has {layout.grid_tokens} patch positions, but image size "
            f"[{h},{w}] with {p}-pixel patches gives {(h // p) * (w // p)}; use the size the checkpoint was trained at"
        )
    return h, w


def describe_mismatch(layout: OfficialLayout, num_classes: int, num_cameras: int, grid_tokens: int) -> str:
    """What contradicts the configured model, e.g. ``50 identities (the config has 171), ...``; empty if none."""
    parts = [
        f"{have} {what} (the config has {want})"
        for have, want, what in (
            (layout.num_classes, num_classes, "identities"),
            (layout.num_cameras, num_cameras, "cameras"),
            (layout.grid_tokens, grid_tokens, "patch positions"),
        )
        if have != want
    ]
    if not parts:
        return ""
    name = layout.benchmark()
    hint = f"; it looks like a {name.upper()} checkpoint: use experiment={name}" if name else ""
    return ", ".join(parts) + hint
