"""Report figures from grouped runs, each written as PNG and SVG with matplotlib's Agg canvas.

Figures (file stems): ``learning_curves``, ``energy_vs_return``, ``return_per_joule_by_T``,
``buffer_and_dis`` and ``policy_entropy``. Groups of different environments get one panel per
environment, because their returns are not comparable. Bands and error bars are ± one sample
standard deviation over the seeds of a group.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from neurorl.analysis.runs import RunData
from neurorl.analysis.tables import RunGroup, format_options

FIGURE_NAMES = ("learning_curves", "energy_vs_return", "return_per_joule_by_T", "buffer_and_dis", "policy_entropy")
PANEL_SIZE = (6.4, 4.4)
DPI = 120
# A log axis for Dis once its values span more than this factor.
LOG_SCALE_SPAN = 50.0
STEPS_LABEL = "environment steps"


def write_all(groups: list[RunGroup], out_dir: Path, *, energy_models: list[str]) -> list[Path]:
    """Draw every report figure into ``out_dir``; return the PNG and SVG paths."""
    colors = group_colors(groups)
    figures = {
        "learning_curves": plot_learning_curves(groups, colors),
        "energy_vs_return": plot_energy_vs_return(groups, colors, energy_models=energy_models),
        "return_per_joule_by_T": plot_return_per_joule_by_T(groups),
        "buffer_and_dis": plot_buffer_and_dis(groups, colors),
        "policy_entropy": plot_policy_entropy(groups, colors),
    }
    paths = []
    for name, figure in figures.items():
        paths += save_figure(figure, out_dir / name)
    return paths


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Save ``figure`` as ``stem``.png and ``stem``.svg (without a date, so reruns give the same SVG)."""
    FigureCanvasAgg(figure)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    figure.savefig(png, dpi=DPI)
    figure.savefig(svg, metadata={"Date": None})
    return [png, svg]


def group_colors(groups: list[RunGroup]) -> dict[str, Any]:
    """Assign each group a color of tab10 (tab20 past 10 groups, repeating past 20)."""
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    return {group.label: cmap(index % cmap.N) for index, group in enumerate(groups)}


def plot_learning_curves(groups: list[RunGroup], colors: dict[str, Any]) -> Figure:
    """Plot evaluation return against environment steps, mean ± std over seeds per group."""
    figure, panels = _env_panels(groups)
    for env, axes in panels.items():
        for group in _groups_of(groups, env):
            _mean_band(axes, group, "eval_return", colors[group.label])
        _finish_axes(axes, title=env, xlabel=STEPS_LABEL, ylabel="evaluation return (mean over episodes)")
    figure.suptitle("Learning curves: evaluation return, mean ± std over seeds")
    return figure


def plot_energy_vs_return(groups: list[RunGroup], colors: dict[str, Any], *, energy_models: list[str]) -> Figure:
    """Plot energy per action (nJ, log axis) against return per group, with the Pareto front."""
    figure, panels = _env_panels(groups)
    for env, axes in panels.items():
        members = [group for group in _groups_of(groups, env) if _positive(group.mean("energy_per_action_j"))]
        for group in members:
            energy = group.mean("energy_per_action_j") * 1e9
            axes.errorbar(
                energy, group.mean("eval_return"),
                xerr=_finite_or_none(group.std("energy_per_action_j") * 1e9),
                yerr=_finite_or_none(group.std("eval_return")),
                fmt="*" if group.pareto else "o", markersize=13 if group.pareto else 7, capsize=3,
                color=colors[group.label], markeredgecolor="black" if group.pareto else colors[group.label],
                label=f"{group.label} (n={len(group.runs)})",
            )
        front = sorted((group for group in members if group.pareto), key=lambda group: group.mean("energy_per_action_j"))
        if front:
            axes.plot(
                [group.mean("energy_per_action_j") * 1e9 for group in front], [group.mean("eval_return") for group in front],
                drawstyle="steps-post", color="black", linestyle="--", linewidth=1, label="Pareto front (★)",
            )
        if members:
            _log_energy_axis(axes, [group.mean("energy_per_action_j") * 1e9 for group in members])
        _note_missing(axes, [group for group in _groups_of(groups, env) if group not in members], "no positive energy per action")
        _finish_axes(axes, title=env, xlabel="actor energy per action (nJ, log scale)",
                     ylabel="evaluation return at the last evaluation")
    models = ", ".join(energy_models) or "unknown"
    figure.suptitle(f"Energy per action vs return, mean ± std over seeds\n(energy model {models})")
    return figure


def plot_return_per_joule_by_T(groups: list[RunGroup]) -> Figure:
    """Plot return per joule as bars over T, one bar series per combination of the other options."""
    figure, panels = _env_panels(groups)
    for env, axes in panels.items():
        members = _groups_of(groups, env)
        series = _series_without_T(members)
        t_values = sorted({_t_of(group) for group in members}, key=lambda value: (value is None, value or 0))
        width = 0.8 / max(1, len(series))
        cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
        for index, (label, by_t) in enumerate(series.items()):
            positions, heights, errors = [], [], []
            for position, t_value in enumerate(t_values):
                if t_value in by_t:
                    group = by_t[t_value]
                    positions.append(position - 0.4 + width * (index + 0.5))
                    heights.append(group.mean("return_per_joule"))
                    errors.append(group.std("return_per_joule") if math.isfinite(group.std("return_per_joule")) else 0.0)
            axes.bar(positions, heights, width=width, yerr=errors, capsize=3, color=cmap(index % cmap.N), label=label)
        axes.set_xticks(range(len(t_values)), [str(value) if value is not None else "-" for value in t_values])
        axes.axhline(0.0, color="grey", linewidth=0.8)
        _finish_axes(axes, title=env, xlabel="simulation steps per action T", ylabel="return per joule (J⁻¹)")
    figure.suptitle("Return per joule by T, mean ± std over seeds")
    return figure


def plot_buffer_and_dis(groups: list[RunGroup], colors: dict[str, Any]) -> Figure:
    """Plot each run's replay buffer size and resilient-replay Dis over steps, marking shrink events."""
    figure = Figure(figsize=(PANEL_SIZE[0] * 1.5, PANEL_SIZE[1] * 1.7), layout="constrained")
    buffer_axes, dis_axes = figure.subplots(2, 1, sharex=True)
    thresholds: set[float] = set()
    dis_values: list[float] = []
    for group in groups:
        for index, run in enumerate(group.runs):
            label = f"{group.label} (n={len(group.runs)})" if index == 0 else None
            _plot_buffer(buffer_axes, run, colors[group.label], label)
            found = _plot_dis(dis_axes, run, colors[group.label])
            dis_values += found
            if found:
                thresholds.update(float(value) for value in run.checks["threshold"] if math.isfinite(value))

    for threshold in sorted(thresholds):
        dis_axes.axhline(threshold, color="black", linestyle="--", linewidth=1)
    if not dis_values:
        dis_axes.text(0.5, 0.5, "no resilient replay checks recorded (replay_checks.csv empty)",
                      transform=dis_axes.transAxes, ha="center", va="center", color="grey")
    elif _wide_positive(dis_values):
        dis_axes.set_yscale("log")

    marker = Line2D([], [], color="black", marker="v", linestyle="none", label="shrink event")
    threshold_line = Line2D([], [], color="black", linestyle="--", label="threshold")
    handles, _ = buffer_axes.get_legend_handles_labels()
    buffer_axes.legend(handles=handles + [marker], fontsize="small")
    dis_axes.legend(handles=[marker, threshold_line] if dis_values else [], fontsize="small")
    buffer_axes.set_ylabel("replay buffer size (transitions)")
    buffer_axes.set_title("Replay buffer size (drops are resilient-replay shrinks)")
    dis_axes.set_ylabel("Dis at each check")
    dis_axes.set_xlabel(STEPS_LABEL)
    dis_axes.set_title("Discrepancy Dis between the policy and stored actions")
    for axes in (buffer_axes, dis_axes):
        axes.grid(alpha=0.3)
    figure.suptitle("Replay buffer size and Dis over training, one line per run")
    return figure


def plot_policy_entropy(groups: list[RunGroup], colors: dict[str, Any]) -> Figure:
    """Plot policy entropy over steps (mean ± std per group), or a note that no run recorded it."""
    figure, panels = _env_panels(groups)
    recorded = [group for group in groups if any(_has_column(run, "policy_entropy") for run in group.runs)]
    for env, axes in panels.items():
        for group in _groups_of(groups, env):
            if group in recorded:
                _mean_band(axes, group, "policy_entropy", colors[group.label])
        if not recorded:
            axes.text(0.5, 0.5, "policy entropy not recorded:\nno run's metrics.csv has a policy_entropy column",
                      transform=axes.transAxes, ha="center", va="center", color="grey")
        else:
            _note_missing(axes, [group for group in _groups_of(groups, env) if group not in recorded], "not recorded")
        _finish_axes(axes, title=env, xlabel=STEPS_LABEL, ylabel="policy entropy (nats per state)")
    figure.suptitle("Policy entropy over training, mean ± std over seeds")
    return figure


def run_curve(run: RunData, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the steps and finite values of a metrics.csv column of one run."""
    if "step" not in run.metrics or column not in run.metrics:
        return np.empty(0), np.empty(0)
    steps, values = run.metrics["step"], run.metrics[column]
    keep = np.isfinite(steps) & np.isfinite(values)
    order = np.argsort(steps[keep], kind="stable")
    return steps[keep][order], values[keep][order]


def mean_curve(runs: list[RunData], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the steps every run evaluated at, and the mean and sample std over runs there."""
    curves = [run_curve(run, column) for run in runs]
    curves = [curve for curve in curves if curve[0].size]
    if not curves:
        return np.empty(0), np.empty(0), np.empty(0)
    # Runs of a group share their options and so their evaluation steps; a metrics.csv cut short
    # only removes steps from the average.
    steps = curves[0][0]
    for other_steps, _ in curves[1:]:
        steps = np.intersect1d(steps, other_steps)
    matrix = np.array([[values[np.searchsorted(run_steps, step)] for step in steps] for run_steps, values in curves])
    mean = matrix.mean(axis=0) if steps.size else np.empty(0)
    std = matrix.std(axis=0, ddof=1) if len(curves) >= 2 and steps.size else np.full(steps.size, np.nan)
    return steps, mean, std


def _mean_band(axes: Axes, group: RunGroup, column: str, color: Any) -> None:
    steps, mean, std = mean_curve(group.runs, column)
    if not steps.size:
        return
    axes.plot(steps, mean, marker="o", markersize=3, color=color, label=f"{group.label} (n={len(group.runs)})")
    if np.isfinite(std).all():
        axes.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _plot_buffer(axes: Axes, run: RunData, color: Any, label: str | None) -> None:
    """Draw the buffer size from evaluations and, where there are checks, its size before and after each."""
    points = [(0.0, 0, 0.0)]
    if "step" in run.metrics and "buffer_size" in run.metrics:
        points += [(step, 2, size) for step, size in zip(run.metrics["step"], run.metrics["buffer_size"])]
    checks = run.checks
    if "step" in checks and "size_before" in checks and "size_after" in checks:
        for step, before, after in zip(checks["step"], checks["size_before"], checks["size_after"]):
            points += [(step, 0, before), (step, 1, after)]
    points = sorted(point for point in points if math.isfinite(point[0]) and math.isfinite(point[2]))
    axes.plot([point[0] for point in points], [point[2] for point in points], color=color, linewidth=1.2, alpha=0.85, label=label)

    shrinks = _shrink_mask(run)
    if shrinks.any():
        axes.plot(checks["step"][shrinks], checks["size_after"][shrinks], "v", color=color, markeredgecolor="black", markersize=6)


def _plot_dis(axes: Axes, run: RunData, color: Any) -> list[float]:
    checks = run.checks
    if "step" not in checks or "dis" not in checks:
        return []
    keep = np.isfinite(checks["step"]) & np.isfinite(checks["dis"])
    if not keep.any():
        return []
    axes.plot(checks["step"][keep], checks["dis"][keep], marker=".", color=color, linewidth=1, alpha=0.85)
    shrinks = _shrink_mask(run) & keep
    if shrinks.any():
        axes.plot(checks["step"][shrinks], checks["dis"][shrinks], "v", color=color, markeredgecolor="black", markersize=6)
    return [float(value) for value in checks["dis"][keep]]


def _shrink_mask(run: RunData) -> np.ndarray:
    checks = run.checks
    if "removed" not in checks or "step" not in checks:
        return np.zeros(0, dtype=bool)
    return np.nan_to_num(checks["removed"]) > 0


def _env_panels(groups: list[RunGroup]) -> tuple[Figure, dict[str, Axes]]:
    envs = list(dict.fromkeys(group.env for group in groups)) or [""]
    columns = min(len(envs), 3)
    rows = math.ceil(len(envs) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[len(envs):]:
        unused.set_visible(False)
    return figure, dict(zip(envs, axes))


def _groups_of(groups: list[RunGroup], env: str) -> list[RunGroup]:
    return [group for group in groups if group.env == env]


def _series_without_T(groups: list[RunGroup]) -> dict[str, dict[Any, RunGroup]]:
    """Map a label of every option but T to the groups of that series, keyed by T."""
    series: dict[str, dict[Any, RunGroup]] = {}
    for group in groups:
        others = {name: value for name, value in group.varying.items() if name != "T"}
        label = format_options(others) if others else "all runs"
        series.setdefault(label, {})[_t_of(group)] = group
    return series


def _t_of(group: RunGroup) -> Any:
    return group.options.get("T")


def _log_energy_axis(axes: Axes, energies_nj: list[float]) -> None:
    """Use a log x axis; within less than a decade, label four evenly spaced (in log) values instead of minor ticks."""
    axes.set_xscale("log")
    low, high = min(energies_nj), max(energies_nj)
    if high / low >= 10:
        return
    padding = max(high / low, 1.02) ** 0.25
    low, high = low / padding, high * padding
    axes.set_xlim(low, high)
    axes.xaxis.set_major_locator(FixedLocator(np.geomspace(low, high, 4)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.4g}"))
    axes.xaxis.set_minor_locator(NullLocator())


def _finish_axes(axes: Axes, *, title: str, xlabel: str, ylabel: str) -> None:
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def _note_missing(axes: Axes, groups: list[RunGroup], reason: str) -> None:
    if groups:
        names = "; ".join(group.label for group in groups)
        axes.text(0.01, 0.01, f"{reason}: {names}", transform=axes.transAxes, fontsize="x-small", color="grey", va="bottom")


def _has_column(run: RunData, column: str) -> bool:
    return run_curve(run, column)[0].size > 0


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _wide_positive(values: list[float]) -> bool:
    positive = [value for value in values if value > 0]
    if len(positive) != len(values) or not positive:
        return False
    return max(positive) / min(positive) > LOG_SCALE_SPAN
