"""Convert a CLIP checkpoint (e.g. OpenAI's TorchScript ``ViT-B-16.pt``) to a safetensors file of its visual
tower, once, so training never has to ``torch.jit.load`` a pickled archive.

    python scripts/convert_clip_weights.py ~/.cache/clip/ViT-B-16.pt weights/ViT-B-16-visual.safetensors
    python -m mdreid.train experiment=rgbnt201 model.backbone.weights=weights/ViT-B-16-visual.safetensors
"""

from __future__ import annotations

import argparse
import logging

from mdreid.models.clip_weights import convert_to_safetensors
from mdreid.process.errors import cli_errors


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "src", help="CLIP checkpoint: TorchScript .pt, state dict (.pt/.pth/.bin) or .safetensors"
    )
    parser.add_argument("dst", help="output .safetensors file (visual.* keys, fp32, grid as stored)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = convert_to_safetensors(args.src, args.dst)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
