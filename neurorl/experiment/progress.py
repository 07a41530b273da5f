"""Rich progress bar and summary table for training runs."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def _format(value: float, pattern: str = "{:.1f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


class TrainingProgress:
    """A rich progress bar showing steps, evaluation return, buffer size, Dis and steps per second."""

    def __init__(self, total_steps: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total_steps, status="")

    def __enter__(self) -> "TrainingProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, fields: dict[str, Any]) -> None:
        status = (
            f"return {_format(fields['eval_return'])} · buffer {fields['buffer_size']:,} · "
            f"Dis {_format(fields['dis'], '{:.3g}')} · {_format(fields['sps'], '{:.0f}')} steps/s"
        )
        self.progress.update(self.task, completed=step, status=status)


def summary_table(summary: dict[str, Any], run_dir: str) -> Table:
    """Build the end-of-run table: return, energy, return per joule and replay figures."""
    table = Table(title=f"NeuroRL run · {summary['env']} · {summary['actor']} T={summary['T']} · {summary['replay']} replay")
    table.add_column("metric")
    table.add_column("value", justify="right")
    energy = summary["energy_j"]
    rows = [
        ("evaluation return (last)", _format(summary["eval_return"], "{:.1f}") + f" ± {_format(summary['eval_return_std'])}"),
        ("evaluation return (max over evaluations)", _format(summary["eval_return_max"])),
        ("actor energy per action", f"{summary['energy_per_action_j'] * 1e9:,.2f} nJ"),
        ("ANN actor energy per action (same sizes)", f"{summary['ann_energy_per_action_j'] * 1e9:,.2f} nJ"),
        ("SNN / ANN energy ratio", _format(summary["snn_ann_energy_ratio"], "{:.3f}")),
        ("ACs / MACs per action", f"{summary['ac_per_action']:,.0f} / {summary['mac_per_action']:,.0f}"),
        ("return per joule", _format(summary["return_per_joule"], "{:,.4g} J⁻¹")),
        ("energy: acting / learning / replay", f"{energy['acting']:.3g} / {energy['learning']:.3g} / {energy['replay']:.3g} J"),
        ("energy model", summary["energy_model"]),
        ("buffer size / shrink events", f"{summary['buffer_size']:,} / {summary['shrink_events']}"),
        ("steps / steps per second", f"{summary['steps']:,} / {summary['sps']:.0f}"),
        ("run directory", run_dir),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
