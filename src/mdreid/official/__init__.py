"""The officially released MDReID checkpoints (docs/official_checkpoints.md): their layout (``layout``), the
reader that builds a ``ReIDModule`` from one (``reader``), the converter (``convert``) and its CLI (``cli``).

Evaluation and export read an official ``.pth`` directly, no flag needed::

    python -m mdreid.eval experiment=rgbnt201 ckpt_path=/weights/MDReID_RGBNT201.pth data.root=/datasets
    python -m mdreid.export ckpt_path=/weights/MDReID_RGBNT201.pth

From Python, ``load_official_checkpoint(path)`` gives the ``ReIDModule``. To fine-tune from one, or to keep
an mdreid checkpoint of it, convert it once::

    python -m mdreid.official convert IN.pth OUT.ckpt --experiment rgbnt201 [HYDRA_OVERRIDES...]
    python -m mdreid.train experiment=rgbnt201 init_from=OUT.ckpt ...
"""

from mdreid.official.convert import convert
from mdreid.official.reader import load_official_checkpoint

__all__ = ["convert", "load_official_checkpoint"]
