"""``neurorl report``: tables and figures from run directories and sweep directories."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from neurorl.analysis.plots import write_all
from neurorl.analysis.runs import ReportError, load_runs
from neurorl.analysis.tables import RunGroup, group_runs, report_table, write_tables


@dataclass
class ReportResult:
    """Groups of runs and output files of one :func:`build_report` call."""

    out_dir: Path
    groups: list[RunGroup]
    files: list[Path] = field(default_factory=list)
    energy_models: list[str] = field(default_factory=list)

    @property
    def pareto_front(self) -> list[str]:
        """Return the labels of the groups on the Pareto front of return and energy per action."""
        return [group.label for group in self.groups if group.pareto]


def build_report(run_dirs: list[str | Path], out_dir: str | Path, console: Console | None = None) -> ReportResult:
    """Group the runs in ``run_dirs`` by options, print their table and write tables and figures.

    Each of ``run_dirs`` is a run directory or a directory searched recursively for runs (such as
    a sweep directory). Writes report.csv, report.json and five figures as PNG and SVG into
    ``out_dir``. Raises ReportError when a path does not exist or contains no run, and before
    writing anything.
    """
    console = console or Console()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--out={str(out_dir)!r} exists and is not a directory")
    runs = load_runs(list(run_dirs))
    groups = group_runs(runs)
    energy_models = sorted({str(run.summary.get("energy_model", "unknown")) for run in runs})

    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_tables(groups, out_dir, energy_models=energy_models)
    files += write_all(groups, out_dir, energy_models=energy_models)

    console.print(report_table(groups, energy_models=energy_models))
    _warn_repeated_seeds(groups, console)
    if len(energy_models) > 1:
        console.print(f"[yellow]note:[/] the runs use different energy models ({escape(', '.join(energy_models))}); "
                      "their energies are not comparable", highlight=False)
    console.print(f"report written to {escape(str(out_dir))}: {escape(', '.join(path.name for path in files))}", highlight=False)
    return ReportResult(out_dir=out_dir, groups=groups, files=files, energy_models=energy_models)


def _warn_repeated_seeds(groups: list[RunGroup], console: Console) -> None:
    for group in groups:
        seeds = group.seeds
        if len(set(seeds)) != len(seeds):
            console.print(f"[yellow]note:[/] group {escape(group.label)} has runs with the same seed ({seeds}); "
                          "each run counts once in its mean", highlight=False)
