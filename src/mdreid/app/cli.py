"""``python -m mdreid.app INDEX``: the local search page over a gallery index (``mdreid.index build``).

    python -m mdreid.app outputs/index                 # http://127.0.0.1:7860, this machine only
    python -m mdreid.app outputs/index --port 8080 --ckpt model.ckpt

The page needs no internet: its scripts and fonts are served locally, and Gradio's usage analytics are off.
``--host 0.0.0.0`` would expose it to the network: the default serves this machine only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from mdreid.process.errors import MDReIDError, cli_errors

OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mdreid.app", description=__doc__.split("\n\n")[0])
    p.add_argument("index", help="the index folder")
    p.add_argument("--ckpt", help="the model (default: the checkpoint the index was built with)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda:0, ...")
    return p


def launch(args: argparse.Namespace, block: bool = True):
    """Load the model, check the index, serve the page; ``block=False`` returns the running page."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    from mdreid.app.engine import SearchEngine
    from mdreid.app.page import build_page
    from mdreid.checkpoint import resolve_checkpoint
    from mdreid.factory import load_module
    from mdreid.index.extract import pick_device
    from mdreid.index.identity import verify_checkpoint
    from mdreid.index.store import GalleryStore

    store = GalleryStore.open(args.index)
    ckpt = resolve_checkpoint(args.ckpt or verify_checkpoint(store.info["model"], store.root), key="--ckpt")
    engine = SearchEngine(load_module(ckpt), ckpt.path, pick_device(args.device))
    engine.store(args.index)  # an index of another model stops here, before serving
    page = build_page(engine, args.index)
    page.queue()
    page.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        show_error=True,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return page


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.port < 65536:
        raise MDReIDError(f"--port {args.port}: use a port from 1 to 65535")
    launch(args)
    return 0
