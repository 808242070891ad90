"""Every entry point refuses a key its config lacks, with or without ``+``, in one ``error:`` line naming the
closest known key (or a renamed key's new name), exit code 2, before anything is built; Hydra's own config
errors end the same way. The entry points run in-process as the CLI calls them (``main()`` with
``sys.argv``): each check happens before Hydra runs a job, so none needs a subprocess."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mdreid.config.check import check_command_line
from mdreid.process.errors import MDReIDError


def _mains() -> dict[str, Callable[[], object]]:
    from mdreid import eval as eval_cli
    from mdreid import score, sweep_summary, train
    from mdreid.data import cli as data_cli
    from mdreid.export import cli as export_cli
    from mdreid.index import cli as index_cli
    from mdreid.official import cli as official_cli
    from mdreid.pretrain import cli as pretrain_cli
    from mdreid.pretrain import zero_shot

    return {
        "train": train.main,
        "eval": eval_cli.main,
        "export": export_cli.main,
        "score": score.main,
        "pretrain": pretrain_cli.main,
        "pretrain.zero_shot": zero_shot.main,
        "index": index_cli.main,
        "data": data_cli.main,
        "sweep_summary": sweep_summary.main,
        "official": official_cli.main,
    }


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Undo the logging set-up of a Hydra job run in-process: its handlers write to this test's captured
    streams, which are closed once the test ends."""
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    saved = {id(lg): (lg.handlers[:], lg.level) for lg in loggers}
    try:
        yield
    finally:
        for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if not isinstance(lg, logging.Logger):
                continue
            handlers, level = saved.get(id(lg), ([], logging.NOTSET))
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)


def one_error(entry: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """``python -m mdreid.<entry> ARGV`` run in-process; asserts exit code 2 with exactly one ``error:``
    line on stderr and no traceback, and returns the line."""
    monkeypatch.setattr(sys, "argv", [f"mdreid.{entry}", *argv])
    with pytest.raises(SystemExit) as exc, restored_logging():
        _mains()[entry]()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exc.value.code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


# the "+typo" case at every entry point: (entry, argv, what the line says)
PLUS_TYPOS = {
    "train": (
        ["+init_form=last.ckpt"],
        "+init_form: init_form is no key of this config; did you mean init_from?",
    ),
    "train/ckpt": (["+ckpt_pth=x"], "did you mean ckpt_path?"),
    "eval": (
        ["ckpt_path=x", "+evl.pairs=all"],
        "+evl.pairs: evl is no key of this config; did you mean eval?",
    ),
    "export": (
        ["ckpt_path=x", "+formt=onnx"],
        "+formt: formt is no key of this config; did you mean format?",
    ),
    "score": (
        ["f.npz", "+eval.pairz=all"],
        "+eval.pairz: eval.pairz is no key of this config; did you mean eval.pairs?",
    ),
    "pretrain": (["+init_weight=t.safetensors"], "did you mean init_weights?"),
    "pretrain.zero_shot": (
        ["+optim.momentum=0.9"],
        "+optim.momentum: optim.momentum is no key of this config",
    ),
    "index": (["build", "I", "--ckpt", "c.ckpt", "+evl.pairs=all"], "+evl.pairs: evl is no key"),
    "data": (["stats", "--dataset", "rgbnt201", "--root", "r", "+verbos=1"], "did you mean --verbose?"),
    "sweep_summary": (["DIR", "+x=1"], "unrecognized arguments: +x=1"),
    "official": (
        ["convert", "a.pth", "b.ckpt", "--experiment", "rgbnt201", "+trust_checkpoint=true"],
        "trust_checkpoint is no override of the converter; vouch for SRC with --trust-checkpoint",
    ),
    "official/override": (
        ["convert", "a.pth", "b.ckpt", "--experiment", "rgbnt201", "+model.mdl.tie_token=0"],
        "did you mean model.mdl.tie_tokens?",
    ),
}


@pytest.mark.parametrize("case", sorted(PLUS_TYPOS))
def test_a_plus_typo_is_refused_at_every_entry_point(case: str, monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    argv, expected = PLUS_TYPOS[case]
    line = one_error(case.split("/")[0], argv, monkeypatch, capsys)
    assert expected in line


HYDRA_ERRORS = {
    # Hydra's own hint (+init_form=...) is never needed: the closest key is named instead
    "not_in_struct": (
        "train",
        ["init_form=last.ckpt"],
        "init_form=last.ckpt: no such key in this config; did you mean init_from?",
    ),
    "renamed_top": (
        "train",
        ["plots=false"],
        "plots=false: no such key in this config; it is now eval.plots",
    ),
    "renamed_plus": ("train", ["+model.mdl.enabled=false"], "it is now model.mdl.decoupled"),
    "renamed": ("eval", ["ckpt_path=x", "model.mdl.enabled=false"], "it is now model.mdl.decoupled"),
    "group_option": (
        "train",
        ["experiment=nope"],
        "experiment=nope: no such option; options: msvr310, rgbnt100",
    ),
    "group_option_sweep": (
        "train",
        ["-m", "experiment=synthetic,synthetik"],
        "did you mean experiment=synthetic?",
    ),
    "other_backbone": (
        "train",
        ["model/backbone=vit_b16", "model.backbone.vision.width=64"],
        "model.backbone.vision.width=64: no such key in this config; model/backbone=tiny has it",
    ),
    "eval_no_ckpt": (
        "eval",
        [],
        "ckpt_path is not set (python -m mdreid.eval); give the checkpoint: ckpt_path=PATH",
    ),
    "export_no_ckpt": ("export", [], "ckpt_path is not set (python -m mdreid.export)"),
    "index_bad_data_key": (
        "index",
        ["build", "I", "--ckpt", "c", "data.batch_sise=4"],
        "did you mean data.batch_size?",
    ),
    "trainer_argument": (
        "train",
        ["+trainer.max_epoch=3"],
        "Trainer takes no argument 'max_epoch'; did you mean trainer.max_epochs?",
    ),
    "callback_argument": (
        "train",
        ["+callbacks.model_checkpoint.save_topk=1"],
        "did you mean callbacks.model_checkpoint.save_top_k?",
    ),
    "new_callback": (
        "train",
        ["+callbacks.mine.every=1"],
        "a new callbacks entry needs its class: +callbacks.mine._target_=...",
    ),
    "hydra_field": (
        "train",
        ["+hydra.job.nam=x"],
        "+hydra.job.nam: Hydra's hydra.job has no field 'nam'; did you mean hydra.job.name?",
    ),
    "sweep_without_m": ("train", ["model.loss.rol_weight=1,2"], "a comma makes a sweep; add -m to sweep"),
    "plus_on_a_key": (
        "train",
        ["+seed=3"],
        "+seed: seed is already in the config; set it without the +: seed=...",
    ),
}


@pytest.mark.parametrize("case", sorted(HYDRA_ERRORS))
def test_hydras_config_errors_are_one_line(case: str, monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    entry, argv, expected = HYDRA_ERRORS[case]
    assert expected in one_error(entry, argv, monkeypatch, capsys)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+trainer.limit_train_batches=1"],  # Lightning's own argument
        ["+callbacks.mine._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.mine.patience=3"],
        ["+hydra.job.env_set.OMP_NUM_THREADS=1"],  # a free mapping of Hydra's
        ["model/backbone=vit_b16", "+model.backbone.vision.width=64"],  # a section the config leaves null
        ["~model.backbone", "+model.backbone={tower: toy, width: 32, patch_size: 16}"],
        ["+model.loss.extra_terms.norm.term=feature_norm", "+model.loss.extra_terms.norm.weight=1"],
    ],
    ids=["trainer", "new_callback", "hydra_env", "null_section", "own_tower", "extra_term"],
)
def test_keys_other_libraries_own_still_take_plus(overrides: list[str]) -> None:
    check_command_line("train.yaml", overrides, multirun=False, entry="python -m mdreid.train")


def test_an_unimportable_target_is_one_line() -> None:
    with pytest.raises(MDReIDError, match=r"callbacks.mine._target_=no_such_pkg.Cb: cannot be imported"):
        check_command_line(
            "train.yaml", ["+callbacks.mine._target_=no_such_pkg.Cb", "+callbacks.mine.x=1"], False, "train"
        )
