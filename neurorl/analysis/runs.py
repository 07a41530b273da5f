"""Find and load run directories: config.toml, summary.json, metrics.csv and replay_checks.csv."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurorl.experiment.rundir import read_csv

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
CHECKS_FILE = "replay_checks.csv"


class ReportError(ValueError):
    """Invalid report input: a missing path, a path without runs, or an unreadable run file."""


@dataclass
class RunData:
    """One finished run: its configuration, summary and per-evaluation and per-check series.

    ``metrics`` and ``checks`` map each CSV column to a float array, with NaN for empty cells and
    text. The ``measure`` column stays text. Both are empty when their file is missing.
    """

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    checks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed", self.summary.get("seed"))
        return int(seed) if seed is not None else None

    def summary_value(self, key: str) -> float:
        """Return a summary figure as a float; missing or null values are NaN."""
        value = self.summary.get(key)
        if isinstance(value, dict) or value is None:
            return math.nan
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Return every run directory (a directory with summary.json) given or found below ``paths``.

    Each path is a run directory or a directory searched recursively for them, such as a sweep
    directory. Raise ReportError naming each path that does not exist or contains no run.
    """
    if not paths:
        raise ReportError("no run directories given; pass run directories or sweep directories")
    found: dict[Path, None] = {}
    problems = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{str(path)!r} does not exist")
            continue
        if not path.is_dir():
            problems.append(f"{str(path)!r} is not a directory; pass a run directory or a sweep directory")
            continue
        runs = _runs_below(path)
        if not runs:
            problems.append(f"{str(path)!r} contains no run ({SUMMARY_FILE} in it or in any directory below it)")
        for run in runs:
            found[run.resolve()] = None
    if problems:
        raise ReportError("; ".join(problems))
    return list(found)


def load_run(path: Path) -> RunData:
    """Read one run directory; raise ReportError for an unreadable summary.json or config.toml."""
    summary = _read_json(path / SUMMARY_FILE)
    config = _read_config(path / CONFIG_FILE, summary)
    return RunData(
        path=path,
        config=config,
        summary=summary,
        metrics=_columns(read_csv(path / METRICS_FILE)),
        checks=_columns(read_csv(path / CHECKS_FILE)),
    )


def load_runs(paths: list[str | Path]) -> list[RunData]:
    """Find and read every run directory given or found below ``paths``."""
    return [load_run(path) for path in find_runs(paths)]


def _runs_below(path: Path) -> list[Path]:
    if (path / SUMMARY_FILE).is_file():
        return [path]
    return sorted(summary.parent for summary in path.rglob(SUMMARY_FILE) if summary.is_file())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_config(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Read config.toml; without it fall back to the options that summary.json repeats."""
    if not path.is_file():
        keys = ("env", "actor", "T", "replay", "seed", "energy_model")
        return {key: summary[key] for key in keys if key in summary}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ReportError(f"{path}: invalid TOML ({error})") from None


def _columns(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    if not rows:
        return {}
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        cells = [row.get(name) for row in rows]
        if name == "measure":
            columns[name] = np.array([cell or "" for cell in cells], dtype=object)
        else:
            columns[name] = np.array([_to_float(cell) for cell in cells], dtype=np.float64)
    return columns


def _to_float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan
