"""``neurorl sweep``: train every point of a grid of options, locally or with Ray.

:func:`run_sweep` validates the whole grid first (see :mod:`neurorl.experiment.sweep_grid`),
then trains every grid point into ``DIR/<run name>`` with the chosen backend (see
:mod:`neurorl.experiment.sweep_backends`). Rules:

- a run whose directory already contains summary.json is skipped, and one interrupted after a
  checkpoint (checkpoint.pt but no summary.json) is resumed. Either must match its grid point in
  config.toml, or the sweep stops before starting anything and names the options that differ;
- with seed batching on (the default), the runs to start of each seed group (grid points that
  differ only in ``seed``) train as one multi-seed job, one process on stacked networks, when
  there are two or more and :func:`neurorl.experiment.multiseed.check_multiseed_request`
  accepts them. Otherwise, and for resumed runs, each run is a job of its own, and the index
  and a printed line say why;
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
from neurorl.experiment.multiseed import check_multiseed_request
from neurorl.experiment.rundir import to_toml, write_json_atomic, write_text_atomic
from neurorl.experiment.sweep_backends import (
    BACKENDS,
    CHECKPOINT_FILE,
    ERROR_FILE,
    POINT_FILE,
    RAY_INSTALL_HINT,
    SUMMARY_FILE,
    Job,
    RunJob,
    RunOutcome,
    SeedGroupJob,
    ray_available,
)
from neurorl.experiment.sweep_grid import SeedGroup, SweepPlan, SweepPoint, group_by_seed, plan_sweep

INDEX_FILE = "sweep.json"
SWEEP_COPY = "sweep.toml"
# Options that change neither what is learned nor its figures, so a finished run may differ in them.
IGNORED_WHEN_RESUMING = ("out", "threads")


@dataclass
class RunRecord:
    """One run of a sweep as the index stores it; ``dir`` is relative to the sweep directory.

    ``job`` names the job that trains the run in this invocation: the run's own name, or its seed
    group's name when ``batched`` (trained with other seeds in one process); None for a skipped
    run. A batched run's ``wall_time_s`` is the wall time of its whole job.
    """

    name: str
    dir: str
    values: dict[str, Any]
    seed_group: str
    status: str = "pending"
    resumed: bool = False
    error: str | None = None
    returncode: int | None = None
    wall_time_s: float | None = None
    job: str | None = None
    batched: bool = False


@dataclass
class SeedGroupRecord:
    """The training plan of one seed group in this invocation, as the index stores it.

    ``execution`` is ``multi-seed`` when its ``batched_runs`` train together in one process,
    ``per-seed`` when each run to train is a job of its own, and ``skipped`` when every run was
    finished before. ``reason`` explains why runs of the group train one per process, if any do.
    """

    name: str
    values: dict[str, Any]
    seeds: list[int]
    runs: list[str]
    execution: str = "skipped"
    batched_runs: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass(frozen=True)
class SeedBatching:
    """Whether the sweep batches seeds, and where that came from (``default``, ``sweep file`` or ``argument``)."""

    enabled: bool
    source: str

    def describe_off(self) -> str:
        """Return the reason printed and recorded when batching is off, naming the flag or file setting."""
        if self.source == "sweep file":
            return "seed batching is off (batch-seeds = false in [sweep])"
        return "seed batching is off (--no-batch-seeds)"


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
    batch_seeds: bool | None = None,
) -> SweepResult:
    """Validate a sweep file, then train every grid point not yet finished into ``out_dir``.

    ``batch_seeds`` trains the runs of each seed group in one multi-seed process where the
    multi-seed trainer supports them (``--batch-seeds``/``--no-batch-seeds``). None takes
    ``batch-seeds`` from the file's [sweep] table, which defaults to true. ``workers`` counts jobs,
    so a multi-seed job takes one worker.

    Raises ConfigError, listing every problem, before any run starts: an invalid sweep file or
    grid point, invalid ``workers``, ``backend`` or ``batch_seeds``, Ray missing for
    ``backend="ray"``, or a finished or resumable run in ``out_dir`` whose configuration differs
    from its grid point.
    """
    console = console or Console()
    out_dir = Path(out_dir)
    plan = _validate(sweep_path, out_dir, workers, backend, batch_seeds)
    batching = _seed_batching(plan, batch_seeds)

    records = _initial_records(plan)
    groups = [_initial_group_record(group) for group in group_by_seed(plan.points)]
    sweep = _SweepIndex(plan, out_dir, records, groups, backend=backend, workers=workers, batching=batching)
    jobs = _prepare_jobs(plan, out_dir, records, groups, batching)
    sweep.write()

    _print_plan(plan, out_dir, records, groups, jobs, backend, workers, batching, console)
    if jobs:
        _execute(jobs, sweep, backend, workers, console)

    result = SweepResult(out_dir=out_dir, index_path=sweep.path, runs=records)
    _print_outcome(result, console)
    return result


def _validate(sweep_path: str | Path, out_dir: Path, workers: int, backend: str, batch_seeds: bool | None) -> SweepPlan:
    """Collect every problem of the options, the sweep file and the output directory into one error."""
    problems = []
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        problems.append(f"--workers={workers!r}: must be a positive number of concurrent jobs")
    if batch_seeds is not None and not isinstance(batch_seeds, bool):
        problems.append(
            f"batch_seeds={batch_seeds!r}: must be True, False or None (None takes batch-seeds from the sweep file's [sweep] table)"
        )
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


def _seed_batching(plan: SweepPlan, batch_seeds: bool | None) -> SeedBatching:
    """Resolve seed batching: the argument wins over the sweep file, which wins over the default (on)."""
    if batch_seeds is not None:
        return SeedBatching(batch_seeds, "argument")
    if "batch_seeds" in plan.settings:
        return SeedBatching(plan.settings["batch_seeds"], "sweep file")
    return SeedBatching(True, "default")


def _initial_records(plan: SweepPlan) -> list[RunRecord]:
    seed_group_of = {point.name: group.name for group in group_by_seed(plan.points) for point in group.points}
    return [
        RunRecord(name=point.name, dir=point.name, values=dict(point.values), seed_group=seed_group_of[point.name])
        for point in plan.points
    ]


def _initial_group_record(group: SeedGroup) -> SeedGroupRecord:
    return SeedGroupRecord(
        name=group.name, values=dict(group.values), seeds=group.seeds, runs=[point.name for point in group.points]
    )


def _prepare_jobs(
    plan: SweepPlan, out_dir: Path, records: list[RunRecord], groups: list[SeedGroupRecord], batching: SeedBatching
) -> list[Job]:
    """Mark finished runs as skipped, choose each seed group's jobs and write the configuration file of every run to train.

    Jobs come in grid order, and a multi-seed job takes the place of its group's first run to start.
    """
    record_of = {record.name: record for record in records}
    position = {point.name: index for index, point in enumerate(plan.points)}
    placed: list[tuple[int, Job]] = []

    for group, group_record in zip(group_by_seed(plan.points), groups):
        to_start: list[SweepPoint] = []
        for point in group.points:
            record = record_of[point.name]
            state = _run_state(out_dir / point.name)
            if state == "finished":
                record.status = "skipped"
            elif state == "interrupted":
                # Multi-seed runs write no checkpoints, so a run with one continues on its own.
                record.resumed = True
                record.job = point.name
                placed.append((position[point.name], _write_job(point, out_dir / point.name, resume=True)))
            else:
                to_start.append(point)

        resumed = [point.name for point in group.points if record_of[point.name].resumed]
        if not to_start and not resumed:
            continue
        reason = _batching_obstacle(to_start, out_dir, batching) if to_start else None
        if to_start and reason is None:
            job = _write_group_job(group, to_start, out_dir)
            placed.append((position[to_start[0].name], job))
            for point in to_start:
                record_of[point.name].job = group.name
                record_of[point.name].batched = True
            group_record.execution = "multi-seed"
            group_record.batched_runs = [point.name for point in to_start]
        else:
            for point in to_start:
                record_of[point.name].job = point.name
                placed.append((position[point.name], _write_job(point, out_dir / point.name, resume=False)))
            group_record.execution = "per-seed"
        group_record.reason = _join_reasons(reason, resumed)

    placed.sort(key=lambda item: item[0])
    return [job for _, job in placed]


def _batching_obstacle(points: list[SweepPoint], out_dir: Path, batching: SeedBatching) -> str | None:
    """Return why the runs to start of one seed group cannot train in one process, or None when they can."""
    if not batching.enabled:
        return batching.describe_off()
    if len(points) < 2:
        return "one run to start"
    seeds = [point.config.seed for point in points]
    try:
        check_multiseed_request(points[0].config, seeds, [out_dir / point.name for point in points])
    except (ValueError, NotImplementedError) as error:
        return f"the multi-seed trainer rejects its options ({' '.join(str(error).split())})"
    return None


def _join_reasons(reason: str | None, resumed: list[str]) -> str | None:
    parts = [reason] if reason else []
    if len(resumed) == 1:
        parts.append(f"{resumed[0]} resumes from its checkpoint on its own, because multi-seed runs write no checkpoints")
    elif resumed:
        parts.append(f"{', '.join(resumed)} resume from their checkpoints one per process, because multi-seed runs write no checkpoints")
    return "; ".join(parts) or None


def _write_group_job(group: SeedGroup, points: list[SweepPoint], out_dir: Path) -> SeedGroupJob:
    runs = tuple(_write_job(point, out_dir / point.name, resume=False) for point in points)
    return SeedGroupJob(
        name=group.name, runs=runs, seeds=tuple(point.config.seed for point in points), threads=points[0].config.threads
    )


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


def _execute(jobs: list[Job], sweep: "_SweepIndex", backend: str, workers: int, console: Console) -> None:
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
            progress.report(outcome, sweep.out_dir, note=sweep.job_note(outcome.name))

        try:
            BACKENDS[backend](jobs, workers, on_start, on_finish)
        except BaseException:
            sweep.mark_unfinished("interrupted")
            raise


class _SweepIndex:
    """The records of a sweep and their atomic copy in DIR/sweep.json."""

    def __init__(
        self, plan: SweepPlan, out_dir: Path, records: list[RunRecord], groups: list[SeedGroupRecord], *,
        backend: str, workers: int, batching: SeedBatching,
    ) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.records = records
        self.by_name = {record.name: record for record in records}
        self.groups = groups
        self.group_by_name = {group.name: group for group in groups}
        self.backend = backend
        self.workers = workers
        self.batching = batching
        self.started_at = _now()
        self.path = out_dir / INDEX_FILE
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / SWEEP_COPY, plan.path.read_text(encoding="utf-8"))

    def update(self, name: str, **fields: Any) -> None:
        record = self.by_name[name]
        for key, value in fields.items():
            setattr(record, key, value)
        self.write()

    def job_note(self, name: str) -> str:
        """Describe the job of a batched run for its progress line, or return "" for a run trained alone."""
        record = self.by_name[name]
        if not record.batched:
            return ""
        batched = len(self.group_by_name[record.seed_group].batched_runs)
        return f"with {batched - 1} other seed{'s' if batched != 2 else ''} in one process"

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
            "batch_seeds": self.batching.enabled,
            "batch_seeds_from": self.batching.source,
            "started_at": self.started_at,
            "updated_at": _now(),
            "counts": counts,
            "runs": [asdict(record) for record in self.records],
            "seed_groups": [asdict(group) for group in self.groups],
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

    def report(self, outcome: RunOutcome, out_dir: Path, note: str = "") -> None:
        """Print one line for a run that ended, with ``note`` (such as the seeds it trained with) after its wall time."""
        if outcome.ok:
            detail = f"{outcome.wall_time_s:.0f} s{', ' + note if note else ''}"
            self.progress.console.print(f"[green]✓[/] {escape(outcome.name)} ({escape(detail)})", highlight=False)
        else:
            self.progress.console.print(
                f"[red]✗[/] {escape(outcome.name)}: {escape(str(outcome.error))} (see {escape(str(out_dir / outcome.name / ERROR_FILE))})",
                highlight=False,
            )


def _print_plan(
    plan: SweepPlan, out_dir: Path, records: list[RunRecord], groups: list[SeedGroupRecord], jobs: list[Job],
    backend: str, workers: int, batching: SeedBatching, console: Console,
) -> None:
    """Print what the sweep trains, and one line for each seed group whose runs train one per process."""
    to_train = sum(record.status == "pending" for record in records)
    resumed = sum(record.resumed for record in records)
    console.print(
        f"[bold]NeuroRL sweep[/] {escape(str(plan.path))}: {len(records)} runs ({to_train} to train"
        f"{f', {resumed} of them resumed' if resumed else ''}, {len(records) - to_train} finished before) "
        f"in {len(jobs)} job{'s' if len(jobs) != 1 else ''} with {workers} {backend} worker{'s' if workers != 1 else ''} "
        f"→ {escape(str(out_dir))}",
        highlight=False,
    )

    multi_seed = [group for group in groups if group.execution == "multi-seed"]
    if multi_seed:
        batched = sum(len(group.batched_runs) for group in multi_seed)
        console.print(
            f"seed batching: {batched} runs train in {len(multi_seed)} multi-seed job{'s' if len(multi_seed) != 1 else ''}, "
            "one process per seed group",
            highlight=False,
        )
    pending = {record.name for record in records if record.status == "pending" and not record.resumed}
    unbatched = [group for group in groups if group.execution == "per-seed" and len(pending.intersection(group.runs)) > 1]
    if unbatched and not batching.enabled:
        console.print(f"{escape(batching.describe_off())}: each run trains in its own process", highlight=False)
        return
    for group in unbatched:
        count = len(pending.intersection(group.runs))
        console.print(
            f"[yellow]seed group {escape(group.name)}[/]: its {count} runs train one per process, "
            f"because {escape(str(group.reason))}",
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
