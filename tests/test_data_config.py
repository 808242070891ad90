"""The ``data`` section is parsed once, at start-up, into a ``DataConfig``: a bad key or value is one line
naming it before the DataModule (or anything else) is built, and the DataModule checks nothing again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conftest import compose_cfg
from mdreid.data.bit_depth import BitDepthRule
from mdreid.data.data_config import DataConfig
from mdreid.data.datamodule import MultiModalReIDDataModule
from mdreid.data.modality_dropout import ModalityDropout
from mdreid.data.val_split import ValConfig
from mdreid.process.errors import MDReIDError
from mdreid.train import train

SECTION = {"dataset": "rgbnt201", "root": "data", "image_size": [32, 16], "batch_size": 8, "num_instances": 2}


def refusal(**values: object) -> str:
    with pytest.raises(MDReIDError) as err:
        DataConfig.parse({**SECTION, **values})
    return str(err.value)


def test_the_section_is_typed_and_its_nested_sections_parsed() -> None:
    data = DataConfig.parse(
        {
            **SECTION,
            "dataset": "RGBNT201",
            "modality_dropout": {"p": 0.3, "mode": "batch"},
            "seed": 5,
            "synth": {"preset": "tiny"},
            "high_bit_depth": {"mode": "range", "range": [0, 65535]},
            "val": "none",
        }
    )
    assert data.dataset == "rgbnt201" and data.image_size == (32, 16)
    assert data.modality_dropout == ModalityDropout(p=0.3, mode="batch", seed=5)  # seeded with data.seed
    assert data.synth is not None and data.synth.like == "rgbnt201"
    assert data.high_bit_depth == BitDepthRule("range", (0.0, 65535.0)) and data.val == ValConfig(mode="none")
    # what a checkpoint stores is plain data that reads back as the same section
    saved = data.hparams()
    assert DataConfig.parse(saved) == data
    assert saved["image_size"] == [32, 16] and saved["val"] == "none" and saved["synth"]["like"] == "rgbnt201"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"batch_sise": 4},
            "data: unknown key(s) batch_sise; allowed: dataset, root, image_size, batch_size,",
        ),
        ({"num_workers": "many"}, "data.num_workers='many': expected an integer"),
        ({"num_workers": -1}, "data.num_workers=-1: use an integer >= 0"),
        ({"eval_batch_size": 0}, "data.eval_batch_size=0: use an integer >= 1"),
        ({"sync_augment": "yes"}, "data.sync_augment='yes': expected true or false"),
        ({"image_size": [32, 16, 3]}, "data.image_size=[32, 16, 3] must be [height, width]"),
        ({"batch_size": 7}, "data.batch_size=7 must be a positive multiple of data.num_instances=2"),
        ({"on_missing": "maybe"}, "invalid data.on_missing='maybe': use one of error, skip"),
        ({"on_bad_name": "drop"}, "invalid data.on_bad_name='drop': use one of error, skip"),
        ({"random_erasing": 1.5}, "data.random_erasing=1.5 must be a probability in [0, 1]"),
        ({"manifest": "rows.csv"}, "data.manifest names the CSV / JSON Lines file of data.dataset=manifest"),
        ({"dataset": "manifest"}, "data.manifest names the CSV / JSON Lines file of data.dataset=manifest"),
        ({"dataset": "market1501"}, "data.dataset='market1501': no dataset reader has that name"),
        ({"reader_args": {"n": 1}}, "data.reader_args={'n': 1}: the built-in reader rgbnt201 takes none"),
        ({"reader_args": "n=1"}, "data.reader_args='n=1': expected a mapping"),
        ({"modality_dropout": {"prob": 0.2}}, "data.modality_dropout: unknown key(s) prob"),
        ({"synth": {"like": "msvr310"}}, "data.synth.like=msvr310 does not fit data.dataset=rgbnt201"),
        ({"high_bit_depth": {"mode": "clip"}}, "data.high_bit_depth.mode='clip': use one of stretch, range"),
        ({"val": {"ids": 0}}, "data.val.ids=0"),
        ({"_target_": "my.DataModule"}, "data._target_=my.DataModule: the data section builds"),
        ({"root": None}, "data.root is not set"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_it(values: dict, message: str) -> None:
    assert refusal(**values).startswith(message)


def test_an_unknown_dataset_is_named_before_the_sections_that_depend_on_it() -> None:
    """data.synth's advice (set it to null for a reader of your own) would be wrong for a misspelt name."""
    assert "no dataset reader has that name" in refusal(dataset="rgbnt20l", synth={"preset": "tiny"})


def test_evaluation_builds_without_a_validation_split(tmp_path: Path) -> None:
    from mdreid.factory import build_datamodule

    data = DataConfig.parse({**SECTION, "root": str(tmp_path), "synth": {"ids": 6}})
    built = build_datamodule(data, validation=False)
    assert built.config == replace(data, val=ValConfig(mode="none")) and not built.has_validation


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+data.batch_sise=4", "data: unknown key(s) batch_sise"),
        ("data.on_missing=maybe", "invalid data.on_missing='maybe'"),
        ("data.image_size=[64]", "data.image_size=[64] must be [height, width]"),
    ],
)
def test_train_refuses_a_bad_data_section_before_building_the_datamodule(
    override: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the DataModule was built before the data section was checked")

    monkeypatch.setattr(MultiModalReIDDataModule, "__init__", never)
    cfg = compose_cfg("train.yaml", ["experiment=synthetic", override], tmp_path)
    with pytest.raises(MDReIDError) as err:
        train(cfg)
    assert str(err.value).startswith(message)


def test_a_new_data_key_on_the_command_line_is_a_typo_with_a_hint() -> None:
    """The section's ``_target_`` takes it whole, so its keys are the config's: ``+data.x`` names the nearest."""
    from mdreid.config.check import check_command_line

    with pytest.raises(MDReIDError, match=r"^\+data\.batch_sise: .*did you mean data\.batch_size\?"):
        check_command_line("train.yaml", ["experiment=synthetic", "+data.batch_sise=4"], False, "train")
    check_command_line("train.yaml", ["experiment=synthetic", "+data.reader_args.n=3"], False, "train")
