"""Scalar logging to TensorBoard when the tensorboard package is installed (CSV is always written)."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class ScalarLogger:
    """Write each metrics row as TensorBoard scalars under ``run_dir/tensorboard``.

    ``purge_step`` discards events at or after that step, so a resumed run does not log the steps
    between its checkpoint and the interruption twice.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if not enabled:
            return
        if not tensorboard_available():
            logger.info("tensorboard is not installed; metrics go to metrics.csv only")
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

    def log(self, step: int, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
