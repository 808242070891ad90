"""Lightning's checkpoint IO made atomic, apart from ``atomic_io`` so that writing a plain file does not
import Lightning (seconds at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mdreid.files.atomic_io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes ``*.ckpt`` files through a temporary file and a rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Local files only: remote URLs are out of scope for this project's checkpoints."""
        atomic_write(path, lambda fh: torch.save(checkpoint, fh))
