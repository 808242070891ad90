"""The proxy foundation: a pool disjoint from every benchmark copy, RGB only, the pretraining entry point end
to end (resume included), and the shipped weights (hash, provenance, loading through the CLIP path)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file

from conftest import compose_cfg
from mdreid.config.hydra import instantiate_callbacks
from mdreid.config.location import asset_path
from mdreid.data.synthetic.appearance import make_identity
from mdreid.data.synthetic.cameras import make_setting
from mdreid.data.synthetic.generate import PRESETS
from mdreid.data.synthetic.layouts import KINDS as BENCH_KINDS
from mdreid.data.synthetic.layouts import PLANNERS
from mdreid.data.synthetic.pool import (
    POOL,
    PoolSpec,
    identity_key,
    kind_of,
    palette_key,
    pool_identity,
    render_pool,
)
from mdreid.data.synthetic.rendering import render_triplet
from mdreid.data.synthetic.shapes import SHAPES
from mdreid.data.synthetic.streams import IDENTITY, SHAPE, SOURCES, keyed_rng
from mdreid.lightning_plugins.last_checkpoint import LastCheckpoint
from mdreid.models.backbone import backbone_kwargs, build_backbone
from mdreid.models.clip_weights import save_visual_weights
from mdreid.pretrain.cli import pretrain, sha256
from mdreid.pretrain.contrastive import supervised_contrastive
from mdreid.pretrain.pool_data import Augment, IdentityOrder, PoolDataset
from mdreid.process.errors import MDReIDError

SHIPPED = Path(asset_path("proxy_foundation_tiny.safetensors"))
TINY_VISION = {"width": 128, "layers": 4, "heads": 4, "patch_size": 8}


def preset_identity_keys(seeds: range) -> set[tuple[int, ...]]:
    """The identity keys of every benchmark copy a preset writes, for the given data seeds."""
    keys = set()
    for like, plan in PLANNERS.items():
        for seed in seeds:
            for preset in PRESETS.values():
                n_test = max(2, round(preset.ids / 3))
                for shot in plan(seed, preset.ids - n_test, n_test, preset.per_id).shots:
                    keys.add((seed, SOURCES[like], IDENTITY, shot.pid))
    return keys


def test_pool_identities_are_disjoint_from_every_preset() -> None:
    """No pool identity shares a random key, nor even a shape, with a train or test identity of a preset."""
    spec = PoolSpec(ids=300, seed=0)
    pool_keys = {identity_key(spec, pid) for pid in range(spec.ids)}
    bench_keys = preset_identity_keys(range(3))
    assert POOL not in {SOURCES[like] for like in PLANNERS}
    assert not pool_keys & bench_keys
    shapes = {
        SHAPES[BENCH_KINDS[like]].sample(keyed_rng(*k, SHAPE))
        for like in PLANNERS
        for k in bench_keys
        if k[1] == SOURCES[like]
    }
    pool_shapes = {
        SHAPES[kind_of(pid)].sample(keyed_rng(*identity_key(spec, pid), SHAPE)) for pid in range(spec.ids)
    }
    assert not shapes & pool_shapes


def test_pool_is_rgb_only_and_independent_of_processes() -> None:
    spec = PoolSpec(ids=4, per_id=3, size=32, cameras=3, seed=5)
    images, labels = render_pool(spec)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    again, _ = render_pool(spec, processes=2)
    assert np.array_equal(images, again)
    # an RGB-only render is the RGB image of the full triplet: never a NIR or TIR rendering
    identity, setting = make_identity("person", (1, POOL, 0, 0)), make_setting("person", (1, POOL, 1, 0))
    full = render_triplet(identity, setting, (1, POOL, 3, 0), size=(32, 32))
    alone = render_triplet(identity, setting, (1, POOL, 3, 0), size=(32, 32), rgb_only=True)
    assert len(alone.images) == 1 and np.array_equal(alone.images[0], full.images[0])


def test_shared_palettes_share_colours_not_shapes() -> None:
    """With palettes, identities of one kind wear one of a few colour sets; shape and textures stay their own."""
    spec = PoolSpec(ids=8, per_id=2, size=32, cameras=2, palettes=2)
    looks = {pid: pool_identity(spec, pid) for pid in range(8)}
    same, other = (0, 4), (0, 2)  # persons: (pid // 2) % 2 picks the palette
    assert np.array_equal(looks[0].looks[0].base, looks[4].looks[0].base)
    assert np.array_equal(looks[0].looks[0].alt, looks[4].looks[0].alt)
    assert not np.array_equal(looks[0].looks[0].base, looks[2].looks[0].base)
    for a, b in (same, other):
        assert looks[a].shape != looks[b].shape
    own = make_identity(kind_of(4), identity_key(spec, 4))
    assert looks[4].shape == own.shape and np.array_equal(looks[4].looks[0].texture, own.looks[0].texture)
    assert PoolSpec(ids=8, per_id=2, size=32, cameras=2).digest() != spec.digest()
    # a pool without palettes keeps the cache name it had before the knob existed
    legacy = {"ids": 3000, "per_id": 12, "size": 64, "cameras": 48, "seed": 0}
    assert PoolSpec().digest() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
    assert palette_key(spec, 4)[1] == POOL  # the pool's own source: no benchmark copy draws from it
    with pytest.raises(MDReIDError, match="palettes"):
        PoolSpec(palettes=-1)


def test_pool_spec_rejects_bad_values() -> None:
    with pytest.raises(MDReIDError, match="pool.ids"):
        PoolSpec(ids=1)
    with pytest.raises(MDReIDError, match="pool.seed"):
        PoolSpec(seed=-1)


def test_supervised_contrastive_matches_a_reference_loop() -> None:
    torch.manual_seed(0)
    z, labels = torch.randn(8, 5), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss, top1 = supervised_contrastive(z, labels, 0.1)
    zn = torch.nn.functional.normalize(z, dim=1)
    sim = zn @ zn.T / 0.1
    total = 0.0
    for i in range(8):
        others = [j for j in range(8) if j != i]
        lse = torch.logsumexp(sim[i, others], 0)
        positives = [j for j in others if labels[j] == labels[i]]
        total += float(-sum(sim[i, j] - lse for j in positives) / len(positives))
    assert float(loss) == pytest.approx(total / 8, rel=1e-5)
    nearest = [max((j for j in range(8) if j != i), key=lambda j: float(sim[i, j])) for i in range(8)]
    assert float(top1) == pytest.approx(np.mean([labels[n] == labels[i] for i, n in enumerate(nearest)]))


def test_identity_order_gives_whole_runs_of_k_views() -> None:
    labels = np.repeat(np.arange(6), 5)  # 6 identities of 5 images: 4 of each per epoch with K=2
    order = IdentityOrder(labels, k=2, seed=3)
    draws = list(order)
    assert len(draws) == len(order) == 6 * 4
    indices = [d[2] for d in draws]
    assert len(set(indices)) == len(indices)  # each image at most once per epoch
    for start in range(0, len(indices), 4):  # batches of P=2 x K=2
        counts = np.unique(labels[indices[start : start + 4]], return_counts=True)[1]
        assert all(c % 2 == 0 for c in counts)  # whole runs of K views: every anchor has a positive
    order.set_epoch(1)
    assert [d[2] for d in order] != indices and list(IdentityOrder(labels, 2, 3)) == draws


def test_intensity_curriculum_rates_and_views() -> None:
    """Colour first, then a linear ramp to the final share; an intensity view is one monotone channel."""
    aug = Augment(intensity=0.6, intensity_from=2, intensity_full=4, gamma=2.0)
    assert [aug.intensity_rate(e) for e in range(6)] == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.6])
    assert all(Augment().intensity_rate(e) == 0 for e in range(10))  # the shipped recipe: none
    gen = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 6, 6, generator=gen)
    torch.manual_seed(1)
    view = aug.intensity_view(colour)
    assert view.shape == colour.shape and torch.equal(view[0], view[1]) and torch.equal(view[1], view[2])
    assert 0 <= float(view.min()) and float(view.max()) <= 1
    gray = colour[:1].expand(3, -1, -1)  # equal channels: any mix gives them back, the gamma keeps the order
    remapped = aug.intensity_view(gray)[0].flatten()
    assert torch.equal(torch.argsort(remapped), torch.argsort(gray[0].flatten()))
    torch.testing.assert_close(Augment(intensity=1.0).intensity_view(gray), gray)  # gamma 1: no remap


def test_pool_dataset_applies_the_curriculum_by_epoch() -> None:
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    plain = {
        "crop_scale": (1.0, 1.0),
        "jitter": 0.0,
        "grayscale": 0.0,
        "blur": 0.0,
    }  # only the curriculum acts
    aug = Augment(**plain, intensity=1.0, intensity_from=1, intensity_full=1)
    dataset = PoolDataset(images, np.arange(4), aug, seed=0)
    colour, _ = dataset[(0, 0, 2)]
    single, label = dataset[(1, 0, 2)]
    assert int(label) == 2 and not torch.equal(colour[0], colour[1])
    assert torch.equal(single[0], single[1]) and torch.equal(single[1], single[2])
    assert torch.equal(dataset[(1, 0, 2)][0], single)  # seeded by (seed, epoch, position)
    for bad, match in (
        ({"intensity": 1.5}, "intensity"),
        ({"intensity_from": 3, "intensity_full": 2}, "from"),
    ):
        with pytest.raises(MDReIDError, match=match):
            Augment(**bad)
    with pytest.raises(MDReIDError, match="gamma"):
        Augment(gamma=0.5)


PRETRAIN_TINY = [
    "data.pool.ids=6",
    "data.pool.per_id=4",
    "data.pool.size=32",
    "data.pool.cameras=2",
    "data.batch_size=8",
    "data.num_instances=2",
    "data.num_workers=0",
    "data.render_processes=1",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "zero_shot.enabled=false",
]


@pytest.mark.slow
def test_pretrain_end_to_end_resumes_and_loads_like_clip(tmp_path: Path) -> None:
    """A tiny pretraining writes an open_clip tower with provenance; a resumed run continues from last.ckpt;
    the file loads through build_backbone(weights=...) at the fine-tuning grid, exactly as CLIP weights do."""
    common = [*PRETRAIN_TINY, f"paths.data_dir={tmp_path / 'data'}"]
    diagnose = ["zero_shot.enabled=true", "zero_shot.data.synth.preset=tiny"]
    first = compose_cfg("pretrain.yaml", [*common, *diagnose, "trainer.max_epochs=1"], tmp_path / "first")
    metrics = pretrain(first)
    assert np.isfinite(metrics["pretrain/loss_epoch"])
    out = Path(first.out)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == sha256(out) and record["seed"] == first.seed and record["epochs"] == 1
    assert record["pool"]["ids"] == 6 and record["command"].startswith("python -m mdreid.pretrain")
    assert all(k.startswith("visual.") for k in load_file(str(out)))
    scores = record["zero_shot"]  # the diagnostic ran on the tiny copy and landed in the provenance
    assert len(scores["mAP"]) == 49 and scores["data"]["preset"] == "tiny"
    assert all(0 < v <= 100 for v in [*scores["mAP"].values(), scores["grayscale_R->R"]["mAP"]])

    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = compose_cfg(
        "pretrain.yaml", [*common, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "resumed"
    )
    pretrain(resumed)
    steps = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        for run in ("first", "resumed")
    ]
    assert steps[0] > 0 and steps[1] == 2 * steps[0]  # the resumed run added one epoch, not two
    visual = build_backbone(
        weights=str(tmp_path / "resumed" / "proxy_foundation.safetensors"),
        image_size=(64, 32),
        embed_dim=128,
        vision=TINY_VISION,
    )
    stored = load_file(str(tmp_path / "resumed" / "proxy_foundation.safetensors"))
    assert torch.equal(visual.conv1.weight, stored["visual.conv1.weight"])
    assert visual.positional_embedding.shape == (1 + 8 * 4, 128)  # 4x4 grid resized to the 8x4 grid


def test_a_later_stage_starts_from_an_earlier_tower(tmp_path: Path) -> None:
    """init_weights loads the tower before training (lr 0 leaves it as it was) and the provenance names it."""
    torch.manual_seed(0)
    start = build_backbone(image_size=(32, 32), embed_dim=128, vision=TINY_VISION)
    init = save_visual_weights(start.state_dict(), tmp_path / "stage1.safetensors")
    (tmp_path / "stage1.json").write_text(json.dumps({"command": "stage one"}))
    overrides = [*PRETRAIN_TINY, f"paths.data_dir={tmp_path / 'data'}", f"init_weights={init}"]
    cfg = compose_cfg("pretrain.yaml", [*overrides, "trainer.max_epochs=1", "optim.lr=0"], tmp_path / "run")
    pretrain(cfg)
    out = Path(cfg.out)
    assert all(torch.equal(v, load_file(str(init))[k]) for k, v in load_file(str(out)).items())
    record = json.loads(out.with_suffix(".json").read_text())["init_weights"]
    assert record == {
        "file": "stage1.safetensors",
        "sha256": sha256(init),
        "provenance": {"command": "stage one"},
    }
    missing = compose_cfg("pretrain.yaml", [*overrides[:-1], "init_weights=nothing.safetensors"], tmp_path)
    with pytest.raises(MDReIDError, match="no such tower file"):
        pretrain(missing)


def test_pretrain_writes_its_resume_point_every_epoch(tmp_path: Path) -> None:
    """last.ckpt comes from LastCheckpoint at each epoch's end, not from a ModelCheckpoint that never saves."""
    cfg = compose_cfg("pretrain.yaml", [f"paths.data_dir={tmp_path}"], tmp_path / "run")
    callbacks = instantiate_callbacks(cfg.callbacks)
    last = [c for c in callbacks if isinstance(c, LastCheckpoint)]
    assert len(last) == 1 and last[0].every_n_epochs == 1
    assert last[0].path == tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert not any(isinstance(c, ModelCheckpoint) for c in callbacks)
    assert cfg.trainer.enable_checkpointing is False  # else Lightning adds its own epoch=N-step=M.ckpt writer


def test_pretrain_refuses_a_starting_tower(tmp_path: Path) -> None:
    cfg = compose_cfg("pretrain.yaml", [*PRETRAIN_TINY, f"backbone.weights={SHIPPED}"], tmp_path / "run")
    with pytest.raises(MDReIDError, match="backbone.weights must be null"):
        pretrain(cfg)


def test_pretrain_reads_the_zero_shot_switch_before_training(tmp_path: Path) -> None:
    """A switch of the wrong kind is one line at start-up, not a diagnostic skipped (or run) after training."""
    cfg = compose_cfg("pretrain.yaml", [*PRETRAIN_TINY, "zero_shot.enabled=maybe"], tmp_path / "run")
    with pytest.raises(MDReIDError) as err:
        pretrain(cfg)
    assert str(err.value) == "zero_shot.enabled='maybe': expected true or false"
    assert not (tmp_path / "run").exists()


def test_shipped_weights_match_their_provenance_and_load_through_the_clip_path(tmp_path: Path) -> None:
    """The file the demo starts from is the one its provenance describes, and the synthetic experiment's
    config loads it with the plain model.backbone.weights path."""
    record = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert record["sha256"] == sha256(SHIPPED)
    for key in ("command", "seed", "wall_time_s", "machine", "pool", "date"):
        assert key in record
    cfg = compose_cfg("train.yaml", ["experiment=synthetic"], tmp_path / "run")
    assert Path(cfg.model.backbone.weights) == SHIPPED
    visual = build_backbone(**backbone_kwargs(cfg.model.backbone), image_size=tuple(cfg.data.image_size))
    stored = load_file(str(SHIPPED))
    assert torch.equal(
        visual.transformer.resblocks[0].attn.in_proj_weight,
        stored["visual.transformer.resblocks.0.attn.in_proj_weight"],
    )


def test_synthetic_experiment_uses_the_pretrained_recipe_and_scratch_stays_available(tmp_path: Path) -> None:
    pretrained = compose_cfg("train.yaml", ["experiment=synthetic"], tmp_path / "a").model
    scratch = compose_cfg("train.yaml", ["experiment=synthetic_scratch"], tmp_path / "b").model
    assert (
        pretrained.optim.backbone_lr <= pretrained.optim.base_lr / 5
    )  # the tower learns well below the heads
    assert scratch.backbone.weights is None and scratch.optim.backbone_lr == scratch.optim.base_lr
