"""Group runs that differ only in their seed, average them, find the Pareto front and write tables.

Runs belong to one group when their config.toml agree on every option except ``out``, ``seed``,
``threads``, ``linear_backend`` and ``device``. Each figure of a group is the mean over its runs,
with the sample standard deviation (n − 1 in the denominator; NaN for a single run).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.markup import escape
from rich.table import Table

from neurorl.analysis.runs import RunData
from neurorl.experiment.rundir import write_csv_atomic, write_json_atomic

# Options that do not change what is learned, so runs differing only in them are seeds of one group.
IGNORED_OPTIONS = ("out", "seed", "threads", "linear_backend", "device")
DEFAULT_LABEL_OPTIONS = ("env", "actor", "T", "replay")


def _summary_metric(key: str) -> Callable[[RunData], float]:
    return lambda run: run.summary_value(key)


def _total_energy(run: RunData) -> float:
    energy = run.summary.get("energy_j")
    if not isinstance(energy, dict) or energy.get("total") is None:
        return math.nan
    return float(energy["total"])


# Report figures: name, unit, and how to read it from a run.
METRICS: dict[str, tuple[str, Callable[[RunData], float]]] = {
    "eval_return": ("return at the last evaluation", _summary_metric("eval_return")),
    "eval_return_max": ("maximum evaluation return", _summary_metric("eval_return_max")),
    "eval_return_final_window": ("mean evaluation return over the final window", _summary_metric("eval_return_final_window")),
    "energy_per_action_j": ("actor energy per action, J", _summary_metric("energy_per_action_j")),
    "ann_energy_per_action_j": ("ANN actor energy per action, J", _summary_metric("ann_energy_per_action_j")),
    "snn_ann_energy_ratio": ("SNN / ANN energy per action", _summary_metric("snn_ann_energy_ratio")),
    "return_per_joule": ("return per joule, 1/J", _summary_metric("return_per_joule")),
    "energy_total_j": ("energy of the whole run (acting, learning, replay), J", _total_energy),
    "buffer_size": ("final replay buffer size, transitions", _summary_metric("buffer_size")),
    "shrink_events": ("resilient replay shrink events", _summary_metric("shrink_events")),
    "sps": ("environment steps per second", _summary_metric("sps")),
}


@dataclass
class MetricStats:
    """Mean and sample standard deviation of one figure over the runs of a group."""

    mean: float
    std: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> "MetricStats":
        array = np.asarray(values, dtype=np.float64)
        mean = float(array.mean()) if array.size else math.nan
        std = float(array.std(ddof=1)) if array.size >= 2 else math.nan
        return cls(mean=mean, std=std, values=[float(value) for value in array])


@dataclass
class RunGroup:
    """Runs with the same options apart from the seed, and their figures over seeds."""

    label: str
    options: dict[str, Any]
    varying: dict[str, Any]
    runs: list[RunData]
    stats: dict[str, MetricStats] = field(default_factory=dict)
    pareto: bool = False

    @property
    def seeds(self) -> list[int | None]:
        return [run.seed for run in self.runs]

    @property
    def env(self) -> str:
        return str(self.options.get("env", ""))

    def mean(self, metric: str) -> float:
        return self.stats[metric].mean

    def std(self, metric: str) -> float:
        return self.stats[metric].std


def group_runs(runs: list[RunData]) -> list[RunGroup]:
    """Group runs by their options except out, seed, threads, linear_backend and device, and compute every figure."""
    by_key: dict[str, list[RunData]] = {}
    options_of: dict[str, dict[str, Any]] = {}
    for run in runs:
        options = {key: value for key, value in run.config.items() if key not in IGNORED_OPTIONS}
        key = json.dumps(options, sort_keys=True, default=str)
        by_key.setdefault(key, []).append(run)
        options_of[key] = options

    varying_keys = _varying_keys(list(options_of.values()))
    groups = []
    for key, members in by_key.items():
        options = options_of[key]
        members.sort(key=lambda run: (run.seed if run.seed is not None else -1, str(run.path)))
        varying = {name: options.get(name) for name in varying_keys}
        label_options = varying or {name: options[name] for name in DEFAULT_LABEL_OPTIONS if name in options}
        group = RunGroup(label=format_options(label_options), options=options, varying=varying, runs=members)
        group.stats = {name: MetricStats.of([read(run) for run in members]) for name, (_, read) in METRICS.items()}
        groups.append(group)

    groups.sort(key=lambda group: [_sort_key(group.varying.get(name)) for name in varying_keys])
    mark_pareto_front(groups)
    return groups


def format_options(options: dict[str, Any]) -> str:
    """Format options as ``T=1, replay=fifo`` (lists as ``64,64``; a missing option as ``-``)."""
    return ", ".join(f"{name}={format_value(value)}" for name, value in options.items())


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(item) for item in value)
    return str(value)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Mark the points (return, energy) that no other point dominates.

    A point dominates another when its return is at least as high and its energy at most as low,
    one of them strictly. Points with a non-finite coordinate are never on the front.
    """
    finite = [math.isfinite(ret) and math.isfinite(energy) for ret, energy in points]
    front = []
    for i, (ret, energy) in enumerate(points):
        dominated = any(
            finite[j] and other_ret >= ret and other_energy <= energy and (other_ret > ret or other_energy < energy)
            for j, (other_ret, other_energy) in enumerate(points)
            if j != i
        )
        front.append(finite[i] and not dominated)
    return front


def mark_pareto_front(groups: list[RunGroup]) -> None:
    """Set ``group.pareto`` from mean return and mean energy per action, within each environment."""
    for env in dict.fromkeys(group.env for group in groups):
        members = [group for group in groups if group.env == env]
        points = [(group.mean("eval_return"), group.mean("energy_per_action_j")) for group in members]
        for group, on_front in zip(members, pareto_front(points)):
            group.pareto = on_front


def write_tables(groups: list[RunGroup], out_dir: Path, *, energy_models: list[str]) -> list[Path]:
    """Write report.csv (one row per group) and report.json (groups, runs, Pareto front); return the paths."""
    varying_keys = list(groups[0].varying) if groups else []
    columns = ["group", "n_seeds", "seeds", *varying_keys, "pareto_front"]
    columns += [f"{name}_{part}" for name in METRICS for part in ("mean", "std")]
    rows = []
    for group in groups:
        row: dict[str, Any] = {
            "group": group.label,
            "n_seeds": len(group.runs),
            "seeds": " ".join(str(seed) for seed in group.seeds),
            "pareto_front": group.pareto,
        }
        row.update({name: format_value(value) for name, value in group.varying.items()})
        for name, stats in group.stats.items():
            row[f"{name}_mean"] = stats.mean
            row[f"{name}_std"] = stats.std
        rows.append(row)
    csv_path = out_dir / "report.csv"
    write_csv_atomic(csv_path, rows, columns)

    json_path = out_dir / "report.json"
    write_json_atomic(json_path, {
        "energy_models": energy_models,
        "std": "sample standard deviation over the runs of a group (n - 1); null for a single run",
        "pareto_front": "groups no other group of the same env beats in both mean return (higher) and mean energy per action (lower)",
        "metrics": {name: description for name, (description, _) in METRICS.items()},
        "groups": [_group_json(group) for group in groups],
    })
    return [csv_path, json_path]


def report_table(groups: list[RunGroup], *, energy_models: list[str]) -> Table:
    """Build the rich table: return, energy per action, return per joule, buffer size and shrinks per group."""
    runs = sum(len(group.runs) for group in groups)
    table = Table(
        title=f"NeuroRL report · {runs} run{'s' if runs != 1 else ''} in {len(groups)} group{'s' if len(groups) != 1 else ''} · mean ± std over seeds · "
        f"energy model {escape(', '.join(energy_models) or 'unknown')}",
    )
    table.add_column("group", ratio=1, overflow="fold")
    table.add_column("seeds", justify="right", no_wrap=True)
    table.add_column("return", justify="right", no_wrap=True)
    table.add_column("nJ per\naction", justify="right", no_wrap=True)
    table.add_column("return\nper J", justify="right", no_wrap=True)
    table.add_column("buffer\nsize", justify="right", no_wrap=True)
    table.add_column("shrinks", justify="right", no_wrap=True)
    table.add_column("Pareto\nfront", justify="center", no_wrap=True)
    for group in groups:
        table.add_row(
            escape(group.label),
            str(len(group.runs)),
            _mean_std(group.stats["eval_return"], "{:,.1f}"),
            _mean_std(group.stats["energy_per_action_j"], "{:,.3f}", scale=1e9),
            _mean_std(group.stats["return_per_joule"], "{:.3g}"),
            _mean_std(group.stats["buffer_size"], "{:,.0f}"),
            _mean_std(group.stats["shrink_events"], "{:.1f}"),
            "★" if group.pareto else "",
        )
    return table


def _group_json(group: RunGroup) -> dict[str, Any]:
    return {
        "label": group.label,
        "options": group.options,
        "varying": group.varying,
        "n_seeds": len(group.runs),
        "seeds": group.seeds,
        "runs": [str(run.path) for run in group.runs],
        "pareto_front": group.pareto,
        "metrics": {name: {"mean": stats.mean, "std": stats.std, "values": stats.values} for name, stats in group.stats.items()},
    }


def _varying_keys(option_sets: list[dict[str, Any]]) -> list[str]:
    """Return the options whose values differ between groups, in the order of the first run's config."""
    keys: dict[str, None] = {}
    for options in option_sets:
        keys.update(dict.fromkeys(options))
    return [
        key for key in keys
        if len({json.dumps(options.get(key), sort_keys=True, default=str) for options in option_sets}) > 1
    ]


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, list):
        return (1, tuple(str(item).zfill(12) for item in value))
    return (1, (str(value),))


def _mean_std(stats: MetricStats, pattern: str, *, scale: float = 1.0) -> str:
    if not math.isfinite(stats.mean):
        return "–"
    text = pattern.format(stats.mean * scale)
    if math.isfinite(stats.std):
        text += "\n± " + pattern.format(stats.std * scale)
    return text
