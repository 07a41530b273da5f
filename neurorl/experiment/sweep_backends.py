"""Sweep backends: run training jobs in local processes or as Ray tasks.

A job trains one run (:class:`RunJob`) or the seeds of one seed group together in one process on
stacked networks (:class:`SeedGroupJob`, through :func:`neurorl.experiment.multiseed.train_seeds`).
Both backends take the same jobs and report through the same two callbacks, ``on_start(name)`` and
``on_finish(outcome)``. They are called once per run, so K times for a group of K seeds, and
always from the calling thread, so the caller may update its progress display and index file
without locks.

- ``local``: up to ``workers`` subprocesses at once. A run is ``python -m neurorl train --config
  <point.toml> --out <run dir> --no-progress`` (``--resume <run dir>`` for a run interrupted
  after a checkpoint), with its output in ``<run dir>/train.log``. A seed group is ``python -m
  neurorl.experiment.sweep_backends <run dir> ...``, and its output is copied into the
  train.log of each of its runs.
- ``ray``: one Ray task per job (one CPU each) on a local Ray instance with ``num_cpus=workers``
  that this module starts and shuts down. Each task trains in the Ray worker process, with its
  Python output redirected to the train.log of each of its runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence, TextIO, Union

import neurorl
from neurorl.config import ConfigError
from neurorl.experiment.checkpoint import CHECKPOINT_NAME as CHECKPOINT_FILE

LOG_FILE = "train.log"
ERROR_FILE = "error.txt"
SUMMARY_FILE = "summary.json"
POINT_FILE = "sweep_point.toml"
ERROR_TAIL_LINES = 40
# Ray's object store only carries jobs and outcomes here; 100 MiB is well above their size and
# leaves the machine's shared memory to the runs.
RAY_OBJECT_STORE_BYTES = 100 * 1024**2
RAY_INSTALL_HINT = "pip install 'neurorl[ray]' (or pip install ray)"
# The module whose command line trains a seed group in one process (see main()).
GROUP_MODULE = "neurorl.experiment.sweep_backends"

TERMINATE_TIMEOUT_S = 10.0
EVENT_POLL_S = 0.2

StartCallback = Callable[[str], None]
# Training subprocesses of the local backend that are running now, so an interrupt can stop them.
_RUNNING_PROCESSES: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunJob:
    """One run to train: its name, run directory and the TOML file holding its configuration.

    ``resume`` continues the run from the checkpoint.pt in its directory instead of starting it.
    """

    name: str
    run_dir: Path
    config_path: Path
    threads: int = 1
    resume: bool = False

    @property
    def runs(self) -> tuple["RunJob", ...]:
        """This run alone, so that both kinds of job list their runs in ``runs``."""
        return (self,)


@dataclass(frozen=True)
class SeedGroupJob:
    """The runs of one seed group, trained together in one process by the multi-seed trainer.

    Every run has the same configuration apart from its seed, in its ``sweep_point.toml``.
    None of them resumes, because multi-seed runs write no checkpoints.
    """

    name: str
    runs: tuple[RunJob, ...]
    seeds: tuple[int, ...]
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.runs or len(self.runs) != len(self.seeds):
            raise ValueError(f"seed group {self.name}: {len(self.runs)} runs for seeds {list(self.seeds)}; give one run per seed")
        resumed = [run.name for run in self.runs if run.resume]
        if resumed:
            raise ValueError(f"seed group {self.name}: runs {resumed} resume from a checkpoint; a multi-seed job only starts runs")


Job = Union[RunJob, SeedGroupJob]


@dataclass(frozen=True)
class RunOutcome:
    """Result of one run: ``ok`` when it wrote summary.json, otherwise ``error`` gives the reason."""

    name: str
    ok: bool
    wall_time_s: float
    returncode: int | None = None
    error: str | None = None


FinishCallback = Callable[[RunOutcome], None]


def train_command(job: Job) -> list[str]:
    """Return the command line that trains ``job``: ``neurorl train`` for a run, this module's for a seed group."""
    if isinstance(job, SeedGroupJob):
        return [sys.executable, "-m", GROUP_MODULE, *[str(run.run_dir) for run in job.runs]]
    if job.resume:
        return [sys.executable, "-m", "neurorl", "train", "--resume", str(job.run_dir), "--no-progress"]
    return [
        sys.executable, "-m", "neurorl", "train",
        "--config", str(job.config_path),
        "--out", str(job.run_dir),
        "--no-progress",
    ]


def run_subprocess_job(job: Job) -> list[RunOutcome]:
    """Train ``job`` in a subprocess with its output in train.log, and return one outcome per run."""
    if isinstance(job, SeedGroupJob):
        return _run_group_subprocess(job)
    return [_run_single_subprocess(job)]


def _run_single_subprocess(job: RunJob) -> RunOutcome:
    command = train_command(job)
    log_path = job.run_dir / LOG_FILE
    start = time.perf_counter()
    with log_path.open("a" if job.resume else "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_environment(job)
        )
        with _registered(process):
            returncode = process.wait()
    wall_time = time.perf_counter() - start

    if returncode == 0 and (job.run_dir / SUMMARY_FILE).is_file():
        return RunOutcome(job.name, True, wall_time, returncode=0)
    tail = _tail(log_path)
    return _failure(job, _failure_reason(returncode, tail), wall_time, returncode, log_tail=tail)


def _run_group_subprocess(job: SeedGroupJob) -> list[RunOutcome]:
    """Train a seed group in one subprocess and copy its output, line by line, into every run's train.log."""
    command = train_command(job)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context((run.run_dir / LOG_FILE).open("w", encoding="utf-8")) for run in job.runs]
        output = _Tee(logs)
        output.write("$ " + " ".join(command) + "\n")
        output.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_environment(job), text=True, encoding="utf-8", errors="replace",
        )
        with _registered(process):
            try:
                for line in process.stdout:
                    output.write(line)
                    output.flush()
            except BaseException:
                # Without its reader the process would block on a full pipe, so it is stopped here.
                process.kill()
                process.wait()
                raise
            returncode = process.wait()
    wall_time = time.perf_counter() - start

    reason = None
    if returncode != 0:
        reason = _failure_reason(returncode, _tail(job.runs[0].run_dir / LOG_FILE))
    return _group_outcomes(job, wall_time, returncode, reason)


def run_in_process_job(job: Job) -> list[RunOutcome]:
    """Train ``job`` in this process with stdout and stderr redirected to train.log (Ray tasks), and return one outcome per run."""
    if isinstance(job, SeedGroupJob):
        return _run_group_in_process(job)
    return [_run_single_in_process(job)]


def _run_single_in_process(job: RunJob) -> RunOutcome:
    from neurorl.config import build_config, load_toml
    from neurorl.experiment.training import resume, train

    log_path = job.run_dir / LOG_FILE
    start = time.perf_counter()
    with (
        log_path.open("a" if job.resume else "w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        action = "resuming" if job.resume else "training"
        print(f"{action} {job.name} in process {os.getpid()} from {job.config_path}", flush=True)
        try:
            config = build_config(load_toml(job.config_path), {"out": str(job.run_dir)})
            run = resume if job.resume else train
            summary = run(config, job.run_dir, show_progress=False)
        except Exception as error:
            traceback.print_exc(file=log)
            reason = f"{type(error).__name__}: {error}"
            return _failure(job, reason, time.perf_counter() - start, None, log_tail=traceback.format_exc())
        print(f"finished: evaluation return {summary['eval_return']}", flush=True)
    return RunOutcome(job.name, True, time.perf_counter() - start)


def _run_group_in_process(job: SeedGroupJob) -> list[RunOutcome]:
    start = time.perf_counter()
    reason = None
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context((run.run_dir / LOG_FILE).open("w", encoding="utf-8")) for run in job.runs]
        output = _Tee(logs)
        stack.enter_context(contextlib.redirect_stdout(output))
        stack.enter_context(contextlib.redirect_stderr(output))
        try:
            train_seed_group([run.run_dir for run in job.runs])
        except Exception as error:
            traceback.print_exc(file=output)
            reason = f"{type(error).__name__}: {error}"
    return _group_outcomes(job, time.perf_counter() - start, None, reason)


def train_seed_group(run_dirs: Sequence[Path], *, show_progress: bool = False) -> list[dict[str, Any]]:
    """Train the grid points in ``run_dirs`` in this process on stacked networks; return one summary per run.

    Each run directory contains its grid point's sweep_point.toml, as ``neurorl sweep`` writes it,
    and gets the files of a single run (see :func:`neurorl.experiment.multiseed.train_seeds`).

    :raises ConfigError: for no run directories, a missing or invalid sweep_point.toml, or points
        whose options differ in more than ``seed``.
    :raises ValueError: when the multi-seed trainer does not support the options (see
        :func:`neurorl.experiment.multiseed.check_multiseed_request`).
    :raises NotImplementedError: for popsan with a Bernoulli encoder.
    """
    from neurorl.config import build_config, load_toml
    from neurorl.experiment.multiseed import train_seeds

    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    if not run_dirs:
        raise ConfigError(["no run directories given; give the run directories of one seed group"])
    configs = [build_config(load_toml(run_dir / POINT_FILE), {"out": str(run_dir)}) for run_dir in run_dirs]
    shared = [_options_besides_seed(config) for config in configs]
    differing = [str(run_dir) for run_dir, options in zip(run_dirs, shared) if options != shared[0]]
    if differing:
        raise ConfigError([
            f"the grid points in {differing} differ from {str(run_dirs[0])!r} in options other than seed; "
            "a seed group's points may differ only in their seed"
        ])

    seeds = [config.seed for config in configs]
    print(f"training seeds {seeds} in process {os.getpid()}: {', '.join(run_dir.name for run_dir in run_dirs)}", flush=True)
    summaries = train_seeds(configs[0], seeds, run_dirs, show_progress=show_progress)
    for run_dir, summary in zip(run_dirs, summaries):
        print(f"finished {run_dir.name}: evaluation return {summary['eval_return']}", flush=True)
    return summaries


def _options_besides_seed(config: Any) -> dict[str, Any]:
    return {key: value for key, value in config.to_dict().items() if key not in ("seed", "out")}


def run_local(jobs: list[Job], workers: int, on_start: StartCallback, on_finish: FinishCallback) -> None:
    """Run ``jobs`` as up to ``workers`` concurrent training subprocesses."""
    events: queue.Queue[tuple[str, object]] = queue.Queue()

    def work(job: Job) -> None:
        for run in job.runs:
            events.put(("start", run.name))
        try:
            outcomes = run_subprocess_job(job)
        except Exception as error:  # an OSError launching or logging must not stop the other runs
            reason = f"{type(error).__name__}: {error}"
            outcomes = [_failure(run, reason, 0.0, None, log_tail=traceback.format_exc()) for run in job.runs]
        for outcome in outcomes:
            events.put(("finish", outcome))

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neurorl-sweep")
    try:
        for job in jobs:
            executor.submit(work, job)
        _dispatch(events, sum(len(job.runs) for job in jobs), on_start, on_finish)
    except BaseException:
        # On Ctrl-C (or any error here) queued runs are dropped and running ones are stopped, so
        # that no training process outlives the sweep.
        executor.shutdown(wait=False, cancel_futures=True)
        _terminate_running_processes()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def run_ray(jobs: list[Job], workers: int, on_start: StartCallback, on_finish: FinishCallback) -> None:
    """Run ``jobs`` as Ray tasks on a local Ray instance with ``workers`` CPUs, started and shut down here."""
    ray = import_ray()
    ray.init(
        address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
        object_store_memory=RAY_OBJECT_STORE_BYTES,
    )
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_in_process_job)
        jobs_by_ref = {task.remote(job): job for job in jobs}
        pending = list(jobs_by_ref)

        # NOTE: Ray does not report when a task starts, so jobs are shown as started in submission
        # order as CPUs free up, which matches Ray's scheduling on one node only approximately.
        waiting = list(jobs)
        for job in waiting[:workers]:
            _start_runs(job, on_start)
        waiting = waiting[workers:]

        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                for outcome in _ray_outcomes(ray, ref, jobs_by_ref[ref]):
                    on_finish(outcome)
                if waiting:
                    _start_runs(waiting.pop(0), on_start)
    finally:
        ray.shutdown()


def import_ray() -> ModuleType:
    """Import Ray, or raise ImportError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"the ray backend needs Ray, which is not installed: {RAY_INSTALL_HINT}") from error
    return ray


def ray_available() -> bool:
    """Return whether Ray can be imported."""
    try:
        import_ray()
    except ImportError:
        return False
    return True


BACKENDS: dict[str, Callable[[list[Job], int, StartCallback, FinishCallback], None]] = {
    "local": run_local,
    "ray": run_ray,
}


def write_error(run_dir: Path, text: str) -> None:
    """Write ``text`` to the run's error.txt atomically."""
    from neurorl.experiment.rundir import write_text_atomic

    write_text_atomic(run_dir / ERROR_FILE, text.rstrip("\n") + "\n")


def _terminate_running_processes() -> None:
    with _RUNNING_LOCK:
        processes = list(_RUNNING_PROCESSES)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=TERMINATE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()


def _dispatch(events: queue.Queue, total: int, on_start: StartCallback, on_finish: FinishCallback) -> None:
    finished = 0
    while finished < total:
        # A timeout lets the main thread run its signal handlers, so Ctrl-C is seen while it waits.
        try:
            kind, payload = events.get(timeout=EVENT_POLL_S)
        except queue.Empty:
            continue
        if kind == "start":
            on_start(payload)
        else:
            finished += 1
            on_finish(payload)


def _start_runs(job: Job, on_start: StartCallback) -> None:
    for run in job.runs:
        on_start(run.name)


def _ray_outcomes(ray: ModuleType, ref: object, job: Job) -> list[RunOutcome]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        # The worker process died (for example killed for memory), so the task could not record it.
        reason = f"the Ray task failed: {type(error).__name__}: {error}"
        return [_failure(run, reason, float("nan"), None, log_tail="") for run in job.runs]


def _group_outcomes(job: SeedGroupJob, wall_time: float, returncode: int | None, reason: str | None) -> list[RunOutcome]:
    """Return each run's outcome after its group's job ended. ``reason`` is why the job failed, or None if it did not.

    A run whose summary.json exists finished even when the job failed afterwards, because the
    multi-seed trainer writes each seed's summary.json last and atomically.
    """
    outcomes = []
    for run in job.runs:
        if (run.run_dir / SUMMARY_FILE).is_file():
            outcomes.append(RunOutcome(run.name, True, wall_time, returncode=returncode))
            continue
        run_reason = reason or f"the multi-seed training process exited with status 0 but wrote no {SUMMARY_FILE} for this seed"
        run_reason = f"multi-seed job {job.name} (seeds {', '.join(map(str, job.seeds))}): {run_reason}"
        outcomes.append(_failure(run, run_reason, wall_time, returncode, log_tail=_tail(run.run_dir / LOG_FILE)))
    return outcomes


def _failure_reason(returncode: int, log_tail: str) -> str:
    if returncode == 0:
        return f"the training command exited with status 0 but wrote no {SUMMARY_FILE}"
    reason = _exit_reason(returncode)
    last = _last_line(log_tail)
    return f"{reason}: {last}" if last else reason


@contextlib.contextmanager
def _registered(process: subprocess.Popen) -> Iterator[None]:
    """List ``process`` among the running training processes, which an interrupt stops, while the block runs."""
    with _RUNNING_LOCK:
        _RUNNING_PROCESSES.add(process)
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING_PROCESSES.discard(process)


def _failure(job: RunJob, reason: str, wall_time: float, returncode: int | None, *, log_tail: str) -> RunOutcome:
    text = f"run {job.name} failed: {reason}\n"
    if log_tail.strip():
        text += f"\nlast lines of {job.run_dir / LOG_FILE}:\n{log_tail}"
    write_error(job.run_dir, text)
    return RunOutcome(job.name, False, wall_time, returncode=returncode, error=reason)


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the training process was killed by {name}"
    return f"the training command exited with status {returncode}"


def _tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) + "\n"


def _child_environment(job: Job) -> dict[str, str]:
    """Return the environment of a training subprocess: neurorl importable, BLAS threads capped, output unbuffered."""
    environment = dict(os.environ)
    # Unbuffered output keeps train.log current and loses nothing when the process is terminated.
    environment.setdefault("PYTHONUNBUFFERED", "1")
    package_root = str(Path(neurorl.__file__).resolve().parent.parent)
    existing = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = package_root + (os.pathsep + existing if existing else "")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environment.setdefault(variable, str(job.threads))
    return environment


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""



class _Tee(io.TextIOBase):
    """A text stream that writes to several files, so a seed group's output reaches every run's train.log."""

    def __init__(self, streams: Sequence[TextIO]) -> None:
        super().__init__()
        self.streams = list(streams)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Train one seed group from the command line; the local backend runs a group's job this way."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {GROUP_MODULE}",
        description="Train the grid points in RUN_DIR ... (options equal apart from seed) in one process on stacked "
        f"networks. Each RUN_DIR holds its grid point's {POINT_FILE}, as neurorl sweep writes it.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory of one seed of the group")
    args = parser.parse_args(argv)
    try:
        train_seed_group([Path(run_dir) for run_dir in args.run_dirs])
    except ConfigError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
