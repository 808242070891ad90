"""Paths with spaces or non-ASCII characters: unquoted, one ``error:`` line that shows the quoting (exit 2);
quoted for Hydra, they reach ``data.manifest`` intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose_cfg
from mdreid.config.cli_overrides import check_overrides
from mdreid.data.data_config import DataConfig
from mdreid.data.readers import load_benchmark
from mdreid.data.readers.manifest import write_manifest
from mdreid.data.synthetic.generate import generate
from mdreid.factory import build_datamodule
from mdreid.process.errors import MDReIDError

FOLDER = "my site é"  # a space and a non-ASCII character


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["data=manifest", "data.manifest=/data/my", "site/m.csv"],
            "cannot read the override 'site/m.csv': it looks like the rest of 'data.manifest=/data/my' cut at a "
            "space; quote a value with spaces or non-ASCII characters for Hydra and the shell: "
            "\"data.manifest='/data/my site/m.csv'\"",
        ),
        (
            ["data.manifest=/data/café/m.csv"],
            "cannot read the override 'data.manifest=/data/café/m.csv' (Hydra: LexerNoViableAltException: "
            "data.manifest=/data/café/m.csv); quote a value with spaces or non-ASCII characters for Hydra and "
            "the shell: \"data.manifest='/data/café/m.csv'\"",
        ),
        (
            ["seed"],
            "cannot read the override 'seed' (Hydra: Error parsing override 'seed'); overrides are key=value",
        ),
    ],
)
def test_unparsable_overrides_name_the_argument_and_the_quoting(argv: list[str], message: str) -> None:
    with pytest.raises(MDReIDError) as info:
        check_overrides(argv)
    assert str(info.value) == message


def test_valid_overrides_pass() -> None:
    check_overrides(
        [
            "data=manifest",
            "data.manifest='/data/my site é/m.csv'",
            "+x=1",
            "~logger",
            "model.loss.rol_weight=0.5,1.5",
        ]
    )


def test_unquoted_path_with_a_space_through_the_train_cli_is_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, "MDREID_VERBOSE": "0", "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "mdreid.train", "data=manifest", f"data.manifest={tmp_path}/my", "site/m.csv"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read the override 'site/m.csv'")
    assert lines[0].endswith(f"\"data.manifest='{tmp_path}/my site/m.csv'\"")


def test_a_quoted_path_with_a_space_and_non_ascii_reaches_the_manifest_reader(tmp_path: Path) -> None:
    data = tmp_path / FOLDER
    generate("rgbnt201", data, ids=8, seed=0, preset="tiny")
    manifest = write_manifest(load_benchmark("rgbnt201", data), data / "m é.csv")
    overrides = ["experiment=synthetic", "data=manifest", f"data.manifest='{manifest}'", "data.synth=null"]
    overrides.append("data.val=none")  # 5 training identities: too few to hold some out
    cfg = compose_cfg("train.yaml", overrides, tmp_path / "run")
    assert cfg.data.manifest == str(manifest)
    datamodule = build_datamodule(DataConfig.parse(cfg.data))
    assert datamodule.benchmark.root == str(manifest) and len(datamodule.benchmark.train) > 0
    with pytest.raises(MDReIDError):  # the same path unquoted cannot be composed
        check_overrides([f"data.manifest={manifest}"])
