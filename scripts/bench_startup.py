"""Start-up time of the train CLI: how long `--help` and ordinary config mistakes take to answer.

Each probe is run ``--repeat`` times in a fresh process; the median wall time is printed. ``--src`` times
another checkout's package (e.g. a ``git worktree`` of an older commit) with the same interpreter.

  python scripts/bench_startup.py                                  # this checkout
  python scripts/bench_startup.py --src /tmp/old/src --repeat 5    # another one
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> train CLI arguments; every probe but --help is a mistake the CLI must refuse
PROBES: dict[str, list[str]] = {
    "--help": ["--help"],
    "Hydra override error (model.loss.rol_wieght=1)": ["experiment=synthetic", "model.loss.rol_wieght=1"],
    "config check (trainer.max_epochs=0)": ["experiment=synthetic", "trainer.max_epochs=0"],
    "data check (data.batch_size=7)": ["experiment=synthetic", "data.batch_size=7"],
}


def time_probe(args: list[str], src: Path | None, work: Path, repeat: int) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "mdreid.train", *args]
    cmd += [f"paths.data_dir={work / 'data'}", f"hydra.run.dir={work / 'run'}"] if args != ["--help"] else []
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=work, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--src", type=Path, help="the src/ folder of the checkout to time (default: this one)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per probe; the median is reported")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("| probe | median wall time (s) |\n|---|---:|")
        for name, probe in PROBES.items():
            print(f"| {name} | {time_probe(probe, args.src, work, args.repeat):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
