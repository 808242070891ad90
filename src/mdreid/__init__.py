"""mdreid: any-to-any multi-modal object re-identification (MDReID, NeurIPS 2025)."""

__version__ = "0.1.0"
