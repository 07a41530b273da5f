"""``neurorl sweep``: train every point of a grid of options, locally or with Ray.

:func:`run_sweep` validates the whole grid first (see :mod:`neurorl.experiment.sweep_grid`),
then trains every grid point into ``DIR/<run name>`` with the chosen backend (see
:mod:`neurorl.experiment.sweep_backends`). Rules:

- a run whose directory already contains summary.json is skipped, and one interrupted after a
  checkpoint (checkpoint.pt but no summary.json) is resumed. Either must match its grid point in
  config.toml, or the sweep stops before starting anything and names the options that differ;
- a failed run gets ``DIR/<run>/error.txt`` and its error in the index, and the other runs go on;
- ``DIR/sweep.json`` (the index: grid, and each run's status, directory and error) is rewritten
  atomically whenever a run starts or ends, and ``DIR/sweep.toml`` is a copy of the sweep file.
"""

from __future__ import annotations

import datetime
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from neurorl.config import ConfigError, TrainConfig
from neurorl.experiment.rundir import to_toml, write_json_atomic, write_text_atomic
from neurorl.experiment.sweep_backends import (
    BACKENDS,
    CHECKPOINT_FILE,
    ERROR_FILE,
    POINT_FILE,
    RAY_INSTALL_HINT,
    SUMMARY_FILE,
    RunJob,
    RunOutcome,
    ray_available,
)
from neurorl.experiment.sweep_grid import SweepPlan, SweepPoint, group_by_seed, plan_sweep

INDEX_FILE = "sweep.json"
SWEEP_COPY = "sweep.toml"
# Options that change neither what is learned nor its figures, so a finished run may differ in them.
IGNORED_WHEN_RESUMING = ("out", "threads")


@dataclass
class RunRecord:
    """One run of a sweep as the index stores it; ``dir`` is relative to the sweep directory."""

    name: str
    dir: str
    values: dict[str, Any]
    seed_group: str
    status: str = "pending"
    resumed: bool = False
    error: str | None = None
    returncode: int | None = None
    wall_time_s: float | None = None


@dataclass
class SweepResult:
    """The outcome of :func:`run_sweep`: every run's record, the index path and the exit status."""

    out_dir: Path
    index_path: Path
    runs: list[RunRecord] = field(default_factory=list)

    def names(self, status: str) -> list[str]:
        """Return the names of the runs with ``status`` (finished, skipped, failed, interrupted)."""
        return [run.name for run in self.runs if run.status == status]

    @property
    def finished(self) -> list[str]:
        return self.names("finished")

    @property
    def skipped(self) -> list[str]:
        return self.names("skipped")

    @property
    def failed(self) -> list[str]:
        return self.names("failed")

    @property
    def exit_code(self) -> int:
        """Return 0 when every run finished or was skipped, 1 otherwise."""
        return 0 if all(run.status in ("finished", "skipped") for run in self.runs) else 1


def run_sweep(
    sweep_path: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    backend: str = "local",
    console: Console | None = None,
) -> SweepResult:
    """Validate a sweep file, then train every grid point not yet finished into ``out_dir``.

    Raises ConfigError, listing every problem, before any run starts: an invalid sweep file or
    grid point, invalid ``workers`` or ``backend``, Ray missing for ``backend="ray"``, or a
    finished or resumable run in ``out_dir`` whose configuration differs from its grid point.
    """
    console = console or Console()
    out_dir = Path(out_dir)
    plan = _validate(sweep_path, out_dir, workers, backend)

    records = _initial_records(plan)
    sweep = _SweepIndex(plan, out_dir, records, backend=backend, workers=workers)
    jobs = _prepare_jobs(plan, out_dir, records)
    sweep.write()

    resumed = sum(record.resumed for record in records)
    console.print(
        f"[bold]NeuroRL sweep[/] {escape(str(plan.path))}: {len(records)} runs ({len(jobs)} to train"
        f"{f', {resumed} of them resumed' if resumed else ''}, {len(records) - len(jobs)} finished before) "
        f"with {workers} {backend} worker{'s' if workers != 1 else ''} → {escape(str(out_dir))}",
        highlight=False,
    )
    if jobs:
        _execute(jobs, sweep, backend, workers, console)

    result = SweepResult(out_dir=out_dir, index_path=sweep.path, runs=records)
    _print_outcome(result, console)
    return result


def _validate(sweep_path: str | Path, out_dir: Path, workers: int, backend: str) -> SweepPlan:
    """Collect every problem of the options, the sweep file and the output directory into one error."""
    problems = []
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        problems.append(f"--workers={workers!r}: must be a positive number of concurrent runs")
    if backend not in BACKENDS:
        problems.append(f"--backend={backend!r}: unknown backend; choose one of {', '.join(BACKENDS)}")
    elif backend == "ray" and not ray_available():
        problems.append(f"--backend=ray: Ray is not installed; install it with {RAY_INSTALL_HINT}")
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"--out={str(out_dir)!r}: exists and is not a directory")

    plan = None
    try:
        plan = plan_sweep(sweep_path)
    except ConfigError as error:
        problems += error.problems
    if plan is not None and out_dir.is_dir():
        problems += _finished_run_problems(plan, out_dir)

    if problems or plan is None:
        raise ConfigError(problems)
    return plan


def _finished_run_problems(plan: SweepPlan, out_dir: Path) -> list[str]:
    """List the finished or resumable runs in ``out_dir`` whose options differ from their grid point."""
    problems = []
    for point in plan.points:
        run_dir = out_dir / point.name
        state = _run_state(run_dir)
        if state == "new":
            continue
        differences = _config_differences(run_dir, point.config)
        if differences:
            problems.append(
                f"{run_dir} already contains a {state} run with other options ({'; '.join(differences)}); "
                "delete that directory to train it again, or choose another --out"
            )
    return problems


def _run_state(run_dir: Path) -> str:
    """Return ``finished`` (summary.json), ``interrupted`` (a checkpoint to resume from) or ``new``."""
    if (run_dir / SUMMARY_FILE).is_file():
        return "finished"
    if (run_dir / CHECKPOINT_FILE).is_file() and (run_dir / "config.toml").is_file():
        return "interrupted"
    return "new"


def _config_differences(run_dir: Path, config: TrainConfig) -> list[str]:
    """List the options in which a finished run's config.toml differs from ``config``."""
    path = run_dir / "config.toml"
    try:
        with path.open("rb") as handle:
            saved = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        return [f"its {path.name} cannot be read ({error})"]

    expected = {key: value for key, value in config.to_dict().items() if value is not None}
    differences = []
    for key in expected.keys() & saved.keys():
        if key in IGNORED_WHEN_RESUMING or saved[key] == expected[key]:
            continue
        differences.append(f"{key}: {saved[key]!r} in the run, {expected[key]!r} in the sweep")
    return sorted(differences)


def _initial_records(plan: SweepPlan) -> list[RunRecord]:
    seed_group_of = {point.name: group.name for group in group_by_seed(plan.points) for point in group.points}
    return [
        RunRecord(name=point.name, dir=point.name, values=dict(point.values), seed_group=seed_group_of[point.name])
        for point in plan.points
    ]


def _prepare_jobs(plan: SweepPlan, out_dir: Path, records: list[RunRecord]) -> list[RunJob]:
    """Mark finished runs as skipped and write the configuration file of every run to train."""
    jobs = []
    for point, record in zip(plan.points, records):
        run_dir = out_dir / point.name
        state = _run_state(run_dir)
        if state == "finished":
            record.status = "skipped"
            continue
        record.resumed = state == "interrupted"
        jobs.append(_write_job(point, run_dir, resume=record.resumed))
    return jobs


def _write_job(point: SweepPoint, run_dir: Path, *, resume: bool) -> RunJob:
    run_dir.mkdir(parents=True, exist_ok=True)
    # An error.txt from an earlier failed attempt would outlive a successful retry.
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    values = point.config.to_dict()
    values["out"] = None
    config_path = run_dir / POINT_FILE
    write_text_atomic(config_path, to_toml(values))
    return RunJob(
        name=point.name, run_dir=run_dir.resolve(), config_path=config_path.resolve(),
        threads=point.config.threads, resume=resume,
    )


def _execute(jobs: list[RunJob], sweep: "_SweepIndex", backend: str, workers: int, console: Console) -> None:
    """Run the jobs with the backend, keeping the index and the progress display current."""
    with SweepProgress(len(sweep.records), console=console) as progress:
        progress.refresh_counts(sweep.records)

        def on_start(name: str) -> None:
            sweep.update(name, status="running")
            progress.refresh_counts(sweep.records)

        def on_finish(outcome: RunOutcome) -> None:
            status = "finished" if outcome.ok else "failed"
            sweep.update(outcome.name, status=status, error=outcome.error, returncode=outcome.returncode,
                         wall_time_s=outcome.wall_time_s)
            progress.refresh_counts(sweep.records)
            progress.report(outcome, sweep.out_dir)

        try:
            BACKENDS[backend](jobs, workers, on_start, on_finish)
        except BaseException:
            sweep.mark_unfinished("interrupted")
            raise


class _SweepIndex:
    """The records of a sweep and their atomic copy in DIR/sweep.json."""

    def __init__(self, plan: SweepPlan, out_dir: Path, records: list[RunRecord], *, backend: str, workers: int) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.records = records
        self.by_name = {record.name: record for record in records}
        self.backend = backend
        self.workers = workers
        self.started_at = _now()
        self.path = out_dir / INDEX_FILE
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / SWEEP_COPY, plan.path.read_text(encoding="utf-8"))

    def update(self, name: str, **fields: Any) -> None:
        record = self.by_name[name]
        for key, value in fields.items():
            setattr(record, key, value)
        self.write()

    def mark_unfinished(self, status: str) -> None:
        for record in self.records:
            if record.status in ("pending", "running"):
                record.status = status
        self.write()

    def write(self) -> None:
        counts = {status: 0 for status in ("pending", "running", "finished", "skipped", "failed", "interrupted")}
        for record in self.records:
            counts[record.status] += 1
        write_json_atomic(self.path, {
            "sweep_file": str(self.plan.path.resolve()),
            "base": self.plan.base,
            "grid": self.plan.grid,
            "backend": self.backend,
            "workers": self.workers,
            "started_at": self.started_at,
            "updated_at": _now(),
            "counts": counts,
            "runs": [asdict(record) for record in self.records],
            "seed_groups": [
                {"name": group.name, "values": group.values, "seeds": group.seeds,
                 "runs": [point.name for point in group.points]}
                for group in group_by_seed(self.plan.points)
            ],
        })


class SweepProgress:
    """A rich progress bar over the runs of a sweep, with finished, skipped, failed and running counts."""

    def __init__(self, total_runs: int, *, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("sweep", total=total_runs, status="")

    def __enter__(self) -> "SweepProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def refresh_counts(self, records: list[RunRecord]) -> None:
        """Show how many runs are finished, skipped, failed and running."""
        count = {status: sum(record.status == status for record in records)
                 for status in ("finished", "skipped", "failed", "running")}
        status = (f"{count['finished']} finished · {count['skipped']} skipped · "
                  f"[red]{count['failed']} failed[/] · {count['running']} running")
        done = count["finished"] + count["skipped"] + count["failed"]
        self.progress.update(self.task, completed=done, status=status)

    def report(self, outcome: RunOutcome, out_dir: Path) -> None:
        """Print one line for a run that ended."""
        if outcome.ok:
            self.progress.console.print(f"[green]✓[/] {escape(outcome.name)} ({outcome.wall_time_s:.0f} s)", highlight=False)
        else:
            self.progress.console.print(
                f"[red]✗[/] {escape(outcome.name)}: {escape(str(outcome.error))} (see {escape(str(out_dir / outcome.name / ERROR_FILE))})",
                highlight=False,
            )


def _print_outcome(result: SweepResult, console: Console) -> None:
    counts = ", ".join(f"{len(result.names(status))} {status}" for status in ("finished", "skipped", "failed"))
    style = "red" if result.exit_code else "green"
    console.print(f"[{style}]sweep done:[/] {counts}; index {escape(str(result.index_path))}", highlight=False)
    for name in result.failed:
        console.print(f"  [red]failed[/] {escape(name)}: {escape(str(result.out_dir / name / ERROR_FILE))}", highlight=False)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
