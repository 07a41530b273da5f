"""Sweep backends: run training jobs in local processes or as Ray tasks.

Both backends take the same jobs and report through the same two callbacks, ``on_start(name)``
and ``on_finish(outcome)``, which are always called from the calling thread, so the caller may
update its progress display and index file without locks.

- ``local``: up to ``workers`` subprocesses of ``python -m neurorl train --config <point.toml>
  --out <run dir> --no-progress`` at once (``--resume <run dir>`` for a run interrupted after a
  checkpoint), each with its output in ``<run dir>/train.log``.
- ``ray``: one Ray task per run (one CPU each) on a local Ray instance with ``num_cpus=workers``
  that this module starts and shuts down. Each task trains in the Ray worker process, with its
  Python output redirected to ``<run dir>/train.log``.
"""

from __future__ import annotations

import contextlib
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
from typing import Callable

import neurorl
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


@dataclass(frozen=True)
class RunOutcome:
    """Result of one run: ``ok`` when it wrote summary.json, otherwise ``error`` gives the reason."""

    name: str
    ok: bool
    wall_time_s: float
    returncode: int | None = None
    error: str | None = None


FinishCallback = Callable[[RunOutcome], None]


def train_command(job: RunJob) -> list[str]:
    """Return the command line that trains ``job`` with the ``neurorl train`` command."""
    if job.resume:
        return [sys.executable, "-m", "neurorl", "train", "--resume", str(job.run_dir), "--no-progress"]
    return [
        sys.executable, "-m", "neurorl", "train",
        "--config", str(job.config_path),
        "--out", str(job.run_dir),
        "--no-progress",
    ]


def run_subprocess_job(job: RunJob) -> RunOutcome:
    """Train ``job`` in a ``neurorl train`` subprocess, with its output in train.log."""
    command = train_command(job)
    log_path = job.run_dir / LOG_FILE
    start = time.perf_counter()
    with log_path.open("a" if job.resume else "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_environment(job)
        )
        with _RUNNING_LOCK:
            _RUNNING_PROCESSES.add(process)
        try:
            returncode = process.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING_PROCESSES.discard(process)
    wall_time = time.perf_counter() - start

    if returncode == 0 and (job.run_dir / SUMMARY_FILE).is_file():
        return RunOutcome(job.name, True, wall_time, returncode=0)
    tail = _tail(log_path)
    reason = _exit_reason(returncode)
    if returncode == 0:
        reason = f"the training command exited with status 0 but wrote no {SUMMARY_FILE}"
    elif _last_line(tail):
        reason += f": {_last_line(tail)}"
    return _failure(job, reason, wall_time, returncode, log_tail=tail)


def run_in_process_job(job: RunJob) -> RunOutcome:
    """Train ``job`` in this process with stdout and stderr redirected to train.log (Ray tasks)."""
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


def run_local(jobs: list[RunJob], workers: int, on_start: StartCallback, on_finish: FinishCallback) -> None:
    """Run ``jobs`` as up to ``workers`` concurrent ``neurorl train`` subprocesses."""
    events: queue.Queue[tuple[str, object]] = queue.Queue()

    def work(job: RunJob) -> None:
        events.put(("start", job.name))
        try:
            outcome = run_subprocess_job(job)
        except Exception as error:  # an OSError launching or logging must not stop the other runs
            outcome = _failure(job, f"{type(error).__name__}: {error}", 0.0, None, log_tail=traceback.format_exc())
        events.put(("finish", outcome))

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neurorl-sweep")
    try:
        for job in jobs:
            executor.submit(work, job)
        _dispatch(events, len(jobs), on_start, on_finish)
    except BaseException:
        # On Ctrl-C (or any error here) queued runs are dropped and running ones are stopped, so
        # that no training process outlives the sweep.
        executor.shutdown(wait=False, cancel_futures=True)
        _terminate_running_processes()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def run_ray(jobs: list[RunJob], workers: int, on_start: StartCallback, on_finish: FinishCallback) -> None:
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

        # NOTE: Ray does not report when a task starts, so runs are shown as started in submission
        # order as CPUs free up, which matches Ray's scheduling on one node only approximately.
        waiting = list(jobs)
        for job in waiting[:workers]:
            on_start(job.name)
        waiting = waiting[workers:]

        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_finish(_ray_outcome(ray, ref, jobs_by_ref[ref]))
                if waiting:
                    on_start(waiting.pop(0).name)
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


BACKENDS: dict[str, Callable[[list[RunJob], int, StartCallback, FinishCallback], None]] = {
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


def _ray_outcome(ray: ModuleType, ref: object, job: RunJob) -> RunOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        # The worker process died (for example killed for memory), so the task could not record it.
        return _failure(job, f"the Ray task failed: {type(error).__name__}: {error}", float("nan"), None, log_tail="")


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


def _child_environment(job: RunJob) -> dict[str, str]:
    """Return the environment of a training subprocess: neurorl importable, BLAS threads capped."""
    environment = dict(os.environ)
    package_root = str(Path(neurorl.__file__).resolve().parent.parent)
    existing = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = package_root + (os.pathsep + existing if existing else "")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environment.setdefault(variable, str(job.threads))
    return environment


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""

