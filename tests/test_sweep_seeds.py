"""`neurorl sweep` with a seed axis: seed groups as multi-seed jobs, fallbacks, the off switch and resumption."""

import _thread
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import sys
import threading
import time

import pytest
import torch
from rich.console import Console

from neurorl.analysis.report import build_report
from neurorl.cli import build_parser, main
from neurorl.config import ConfigError
from neurorl.experiment import sweep_backends
from neurorl.experiment.multiseed import train_seeds
from neurorl.experiment.rundir import to_toml, write_json_atomic
from test_sweep import toml_value
from neurorl.experiment.sweep import run_sweep
from neurorl.experiment.sweep_backends import RunJob, SeedGroupJob, train_seed_group
from neurorl.experiment.sweep_grid import plan_sweep
from neurorl.experiment.training import train

torch.set_num_threads(1)

NAV = "neurorl/2DNav-v1"
TINY_BASE = {
    "env": NAV, "T": 1, "steps": 200, "learning-starts": 100, "hidden": "16,16", "eval-every": 100, "eval-episodes": 1,
    "check-interval": 100, "min-size": 100, "check-batch": 32, "batch-size": 32, "checkpoint-every": 100,
}
TIMING_COLUMNS = {"sps", "wall_time_s"}
# Stands in for the training command: records its process and command line in every run directory
# it is given, then writes summary.json there, so that the sweep counts the run as finished.
FAKE_TRAINER = """
import json, os, pathlib, sys
command = json.loads(sys.argv[1])
for run_dir in sys.argv[2:]:
    run_dir = pathlib.Path(run_dir)
    record = {"pid": os.getpid(), "command": command, "run_dirs": sys.argv[2:]}
    (run_dir / "fake_job.json").write_text(json.dumps(record))
    (run_dir / "summary.json").write_text('{"eval_return": 0.0}')
"""


def write_sweep(path, base, grid, settings=None):
    lines = ["[base]"] + [f"{key} = {toml_value(value)}" for key, value in base.items()]
    lines += ["", "[grid]"] + [f"{key} = {toml_value(value)}" for key, value in grid.items()]
    if settings is not None:
        lines += ["", "[sweep]"] + [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def console_to(buffer=None):
    return Console(file=buffer if buffer is not None else io.StringIO(), width=400)


def read_index(out):
    return json.loads((out / "sweep.json").read_text())


def runs_by_name(out):
    return {run["name"]: run for run in read_index(out)["runs"]}


def groups_by_name(out):
    return {group["name"]: group for group in read_index(out)["seed_groups"]}


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def read_rows(path):
    with path.open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def fake_trainer(monkeypatch):
    """Replace the training command of both job kinds by FAKE_TRAINER; return a reader of what each run recorded."""
    original = sweep_backends.train_command

    def command(job):
        run_dirs = [str(run.run_dir) for run in job.runs]
        return [sys.executable, "-c", FAKE_TRAINER, json.dumps(original(job)), *run_dirs]

    monkeypatch.setattr(sweep_backends, "train_command", command)
    return lambda run_dir: json.loads((run_dir / "fake_job.json").read_text())


def forbid_training(monkeypatch):
    def fail(job):
        raise AssertionError(f"the sweep started training {job.name}")

    monkeypatch.setattr(sweep_backends, "run_subprocess_job", fail)
    monkeypatch.setattr(sweep_backends, "run_in_process_job", fail)


def write_run_files(run_dir, config, *, finished):
    """Write what a finished run, or one interrupted after a checkpoint, leaves behind as far as the sweep looks."""
    run_dir.mkdir(parents=True)
    values = config.to_dict()
    values["out"] = str(run_dir)
    (run_dir / "config.toml").write_text(to_toml(values))
    if finished:
        write_json_atomic(run_dir / "summary.json", {"eval_return": 0.0})
    else:
        (run_dir / "checkpoint.pt").write_bytes(b"a checkpoint")


# --------------------------------------------------------------------------- jobs of a sweep


def test_seed_groups_train_as_one_job(tmp_path, fake_trainer):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"replay": ["fifo", "resilient"], "seed": [0, 1, 2]})
    out = tmp_path / "out"
    printed = io.StringIO()
    result = run_sweep(path, out, workers=2, console=console_to(printed))

    assert result.exit_code == 0
    assert len(result.finished) == 6
    pids = {}
    for name, run in runs_by_name(out).items():
        group = run["seed_group"]
        recorded = fake_trainer(out / name)
        assert run["batched"] is True, name
        assert run["job"] == group
        assert recorded["command"][1:3] == ["-m", "neurorl.experiment.sweep_backends"]
        assert recorded["run_dirs"] == [str((out / f"{group}__seed={seed}").resolve()) for seed in (0, 1, 2)]
        pids.setdefault(group, set()).add(recorded["pid"])
    assert set(pids) == {"replay=fifo", "replay=resilient"}
    assert all(len(group_pids) == 1 for group_pids in pids.values())
    assert pids["replay=fifo"] != pids["replay=resilient"]

    for group in read_index(out)["seed_groups"]:
        assert group["execution"] == "multi-seed"
        assert group["batched_runs"] == group["runs"]
        assert group["reason"] is None
    index = read_index(out)
    assert index["batch_seeds"] is True
    assert index["batch_seeds_from"] == "default"
    text = printed.getvalue()
    assert "6 runs (6 to train, 0 finished before) in 2 jobs" in text
    assert "seed batching: 6 runs train in 2 multi-seed jobs" in text
    assert "with 2 other seeds in one process" in text


def test_group_order_follows_grid(tmp_path, fake_trainer):
    # seed first in the grid: each group's runs are not adjacent in grid order.
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [3, 4], "replay": ["fifo", "resilient"]})
    out = tmp_path / "out"
    run_sweep(path, out, workers=1, console=console_to())

    groups = groups_by_name(out)
    assert list(groups) == ["replay=fifo", "replay=resilient"]
    assert groups["replay=fifo"]["runs"] == ["seed=3__replay=fifo", "seed=4__replay=fifo"]
    assert groups["replay=fifo"]["seeds"] == [3, 4]
    first = fake_trainer(out / "seed=3__replay=fifo")
    assert first == fake_trainer(out / "seed=4__replay=fifo")
    assert first["pid"] != fake_trainer(out / "seed=3__replay=resilient")["pid"]


def test_grid_without_seed_axis_runs_alone(tmp_path, fake_trainer):
    path = write_sweep(tmp_path / "sweep.toml", {**TINY_BASE, "seed": 7}, {"replay": ["fifo", "resilient"]})
    out = tmp_path / "out"
    run_sweep(path, out, workers=1, console=console_to())

    for name, run in runs_by_name(out).items():
        assert run["batched"] is False
        assert run["job"] == name
        assert fake_trainer(out / name)["command"][1:4] == ["-m", "neurorl", "train"]
    for group in read_index(out)["seed_groups"]:
        assert group["execution"] == "per-seed"
        assert group["reason"] == "one run to start"


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize(
    "grid_option,rejected,fragment",
    [
        ("algo", "sac", "algo='sac' is not supported with several seeds per process"),
        ("encoder", "bernoulli", "encoder='bernoulli' is not supported with several seeds per process"),
        ("actor", "mdcsan", "actor='mdcsan' is not supported with several seeds per process"),
    ],
)
def test_unsupported_group_falls_back(tmp_path, fake_trainer, grid_option, rejected, fragment):
    supported = {"algo": "td3", "encoder": "deterministic", "actor": "popsan"}[grid_option]
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {grid_option: [supported, rejected], "seed": [0, 1]})
    out = tmp_path / "out"
    printed = io.StringIO()
    result = run_sweep(path, out, workers=2, console=console_to(printed))
    assert result.exit_code == 0

    groups = groups_by_name(out)
    fallback = groups[f"{grid_option}={rejected}"]
    assert fallback["execution"] == "per-seed"
    assert fallback["batched_runs"] == []
    assert "the multi-seed trainer rejects its options" in fallback["reason"]
    assert fragment in fallback["reason"]
    assert groups[f"{grid_option}={supported}"]["execution"] == "multi-seed"

    runs = runs_by_name(out)
    fallback_pids = set()
    for seed in (0, 1):
        name = f"{grid_option}={rejected}__seed={seed}"
        assert runs[name]["batched"] is False
        assert runs[name]["job"] == name
        recorded = fake_trainer(out / name)
        assert recorded["command"][1:4] == ["-m", "neurorl", "train"]
        fallback_pids.add(recorded["pid"])
    assert len(fallback_pids) == 2

    line = next(line for line in printed.getvalue().splitlines() if line.startswith(f"seed group {grid_option}={rejected}"))
    assert "its 2 runs train one per process, because the multi-seed trainer rejects its options" in line
    assert fragment in line


@pytest.mark.slow
def test_fallback_group_trains_single_runs(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"encoder": ["bernoulli"], "seed": [0, 1]})
    out = tmp_path / "out"
    printed = io.StringIO()
    result = run_sweep(path, out, workers=2, console=console_to(printed))

    assert result.exit_code == 0
    assert "seed group encoder=bernoulli: its 2 runs train one per process" in printed.getvalue()
    for seed in (0, 1):
        run_dir = out / f"encoder=bernoulli__seed={seed}"
        assert "multiseed" not in summary_of(run_dir)
        assert summary_of(run_dir)["seed"] == seed
        assert (run_dir / "checkpoint.pt").is_file()
        assert "$ " + sys.executable + " -m neurorl train" in (run_dir / "train.log").read_text()


# --------------------------------------------------------------------------- the off switch


@pytest.mark.parametrize(
    "settings,argument,batched,source",
    [
        (None, False, False, "argument"),
        ({"batch-seeds": "false"}, None, False, "sweep file"),
        ({"batch_seeds": "false"}, True, True, "argument"),
        ({"batch-seeds": "true"}, None, True, "sweep file"),
    ],
)
def test_batch_seeds_setting(tmp_path, fake_trainer, settings, argument, batched, source):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1, 2]}, settings)
    out = tmp_path / "out"
    printed = io.StringIO()
    run_sweep(path, out, workers=3, console=console_to(printed), batch_seeds=argument)

    index = read_index(out)
    assert index["batch_seeds"] is batched
    assert index["batch_seeds_from"] == source
    (group,) = index["seed_groups"]
    pids = {fake_trainer(out / f"seed={seed}")["pid"] for seed in (0, 1, 2)}
    assert all(run["batched"] is batched for run in index["runs"])
    if batched:
        assert group["execution"] == "multi-seed"
        assert len(pids) == 1
        return
    assert group["execution"] == "per-seed"
    assert len(pids) == 3
    off = "seed batching is off (--no-batch-seeds)" if source == "argument" else "seed batching is off (batch-seeds = false in [sweep])"
    assert group["reason"] == off
    assert f"{off}: each run trains in its own process" in printed.getvalue()


def test_cli_no_batch_seeds_flag(tmp_path, fake_trainer, capsys):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]}, {"batch-seeds": "true"})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-batch-seeds"]) == 0
    assert read_index(out)["batch_seeds"] is False
    assert fake_trainer(out / "seed=0")["pid"] != fake_trainer(out / "seed=1")["pid"]

    assert main(["sweep", str(path), "--out", str(tmp_path / "batched"), "--batch-seeds"]) == 0
    assert fake_trainer(tmp_path / "batched" / "seed=0")["pid"] == fake_trainer(tmp_path / "batched" / "seed=1")["pid"]


def test_cli_help_describes_batch_seeds(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-seeds, --no-batch-seeds" in text
    assert "--no-batch-seeds trains every seed in its own process" in text
    assert "[sweep] table" in text


@pytest.mark.parametrize(
    "settings,fragment",
    [
        ({"batch-seeds": '"no"'}, '[sweep] batch-seeds = "no": must be true or false'),
        ({"batch-seeds": "1"}, "[sweep] batch-seeds = 1: must be true or false"),
        ({"batch-seeds": '"false"'}, '[sweep] batch-seeds = "false": must be true or false (a TOML boolean, without quotes)'),
        ({"batch-seed": "false"}, "[sweep] batch-seed: unknown setting; the settings are batch-seeds"),
        ({"batch-seeds": "true", "batch_seeds": "false"}, "[sweep] batch_seeds: given twice"),
    ],
)
def test_batch_seeds_file_rejects_bad_value(tmp_path, monkeypatch, settings, fragment):
    forbid_training(monkeypatch)
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]}, settings)
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as caught:
        run_sweep(path, out, workers=1, console=console_to())
    assert fragment in str(caught.value)
    assert len(caught.value.problems) == 1
    assert not out.exists()


def test_sweep_table_must_be_table(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('sweep = 1\n[base]\nenv = "neurorl/2DNav-v1"\n[grid]\nseed = [0, 1]\n')
    with pytest.raises(ConfigError, match=r"sweep = 1: expected a table \[sweep\]"):
        plan_sweep(path)


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_batch_seeds_argument_rejects_non_boolean(tmp_path, monkeypatch, value):
    forbid_training(monkeypatch)
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]})
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(f"batch_seeds={value!r}: must be True, False or None")):
        run_sweep(path, out, workers=1, console=console_to(), batch_seeds=value)
    assert not out.exists()


# --------------------------------------------------------------------------- resumption


def test_resume_trains_only_unfinished_seeds(tmp_path, fake_trainer):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1, 2, 3]})
    out = tmp_path / "out"
    points = {point.name: point for point in plan_sweep(path).points}
    write_run_files(out / "seed=0", points["seed=0"].config, finished=True)
    write_run_files(out / "seed=3", points["seed=3"].config, finished=False)
    finished_summary = (out / "seed=0" / "summary.json").read_bytes()

    printed = io.StringIO()
    result = run_sweep(path, out, workers=2, console=console_to(printed))

    assert result.skipped == ["seed=0"]
    assert sorted(result.finished) == ["seed=1", "seed=2", "seed=3"]
    assert (out / "seed=0" / "summary.json").read_bytes() == finished_summary
    assert not (out / "seed=0" / "fake_job.json").exists()

    batched = fake_trainer(out / "seed=1")
    assert batched == fake_trainer(out / "seed=2")
    assert batched["run_dirs"] == [str((out / "seed=1").resolve()), str((out / "seed=2").resolve())]
    resumed = fake_trainer(out / "seed=3")
    assert resumed["pid"] != batched["pid"]
    assert "--resume" in resumed["command"]

    runs = runs_by_name(out)
    assert runs["seed=0"]["status"] == "skipped"
    assert runs["seed=0"]["job"] is None
    assert [runs[name]["batched"] for name in ("seed=1", "seed=2", "seed=3")] == [True, True, False]
    assert runs["seed=3"]["resumed"] is True
    (group,) = read_index(out)["seed_groups"]
    assert group["execution"] == "multi-seed"
    assert group["batched_runs"] == ["seed=1", "seed=2"]
    assert group["reason"] == "seed=3 resumes from its checkpoint on its own, because multi-seed runs write no checkpoints"
    assert "4 runs (3 to train, 1 of them resumed, 1 finished before) in 2 jobs" in printed.getvalue()


def test_resume_with_one_seed_left_runs_it_alone(tmp_path, fake_trainer):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1, 2]})
    out = tmp_path / "out"
    for point in plan_sweep(path).points[:2]:
        write_run_files(out / point.name, point.config, finished=True)

    result = run_sweep(path, out, workers=1, console=console_to())
    assert result.finished == ["seed=2"]
    assert fake_trainer(out / "seed=2")["command"][1:4] == ["-m", "neurorl", "train"]
    (group,) = read_index(out)["seed_groups"]
    assert group["execution"] == "per-seed"
    assert group["reason"] == "one run to start"


def test_finished_sweep_reruns_nothing(tmp_path, monkeypatch):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]})
    out = tmp_path / "out"
    for point in plan_sweep(path).points:
        write_run_files(out / point.name, point.config, finished=True)
    forbid_training(monkeypatch)

    result = run_sweep(path, out, workers=1, console=console_to())
    assert result.skipped == ["seed=0", "seed=1"]
    (group,) = read_index(out)["seed_groups"]
    assert group["execution"] == "skipped"
    assert group["reason"] is None


# --------------------------------------------------------------------------- the group trainer


def write_point_files(tmp_path, **changes):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]})
    run_dirs = []
    for point in plan_sweep(path).points:
        run_dir = tmp_path / point.name
        run_dir.mkdir()
        values = point.config.to_dict() | (changes if point.config.seed == 1 else {})
        values["out"] = None
        (run_dir / "sweep_point.toml").write_text(to_toml(values))
        run_dirs.append(run_dir)
    return run_dirs


def test_group_trainer_rejects_mixed_points(tmp_path):
    run_dirs = write_point_files(tmp_path, steps=300)
    with pytest.raises(ConfigError, match=r"differ from .*seed=0' in options other than seed"):
        train_seed_group(run_dirs)
    assert not (run_dirs[0] / "config.toml").exists()


def test_group_trainer_rejects_missing_input(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no run directories given"):
        train_seed_group([])
    with pytest.raises(ConfigError, match="file not found"):
        train_seed_group([tmp_path / "nowhere"])
    assert sweep_backends.main([str(tmp_path / "nowhere")]) == 2
    assert "sweep_point.toml" in capsys.readouterr().err


def test_seed_group_job_rejects_bad_runs(tmp_path):
    run = RunJob(name="seed=0", run_dir=tmp_path, config_path=tmp_path / "sweep_point.toml")
    with pytest.raises(ValueError, match=r"1 runs for seeds \[0, 1\]"):
        SeedGroupJob(name="base", runs=(run,), seeds=(0, 1))
    with pytest.raises(ValueError, match="resume from a checkpoint"):
        SeedGroupJob(name="base", runs=(dataclasses.replace(run, resume=True),), seeds=(0,))


# --------------------------------------------------------------------------- real training


@pytest.fixture(scope="module")
def trained_sweeps(tmp_path_factory):
    """A sweep of seeds 0, 1 and 2 batched into one job, and seed 1 as a sweep of one run."""
    root = tmp_path_factory.mktemp("sweep_seeds")
    batched = write_sweep(root / "batched.toml", TINY_BASE, {"seed": [0, 1, 2]})
    single = write_sweep(root / "single.toml", TINY_BASE, {"seed": [1]})
    assert run_sweep(batched, root / "batched", workers=1, console=console_to()).exit_code == 0
    assert run_sweep(single, root / "single", workers=1, console=console_to()).exit_code == 0
    return root


@pytest.mark.slow
def test_batched_sweep_records_one_process(trained_sweeps):
    out = trained_sweeps / "batched"
    (group,) = read_index(out)["seed_groups"]
    assert group["execution"] == "multi-seed"
    logs = [(out / f"seed={seed}" / "train.log").read_text() for seed in (0, 1, 2)]
    assert logs[0] == logs[1] == logs[2]
    assert re.search(r"training seeds \[0, 1, 2\] in process \d+", logs[0])
    for index, seed in enumerate((0, 1, 2)):
        multiseed = summary_of(out / f"seed={seed}")["multiseed"]
        assert multiseed["seeds"] == [0, 1, 2]
        assert multiseed["index"] == index


@pytest.mark.slow
def test_batched_run_dir_has_single_run_files(trained_sweeps, tmp_path):
    batched = trained_sweeps / "batched" / "seed=1"
    single = trained_sweeps / "single" / "seed=1"
    # Multi-seed runs write no checkpoint.pt, and nothing reads a finished run's final checkpoint.
    assert {path.name for path in batched.iterdir()} == {path.name for path in single.iterdir()} - {"checkpoint.pt"}
    assert set(summary_of(single)) <= set(summary_of(batched))
    assert list(read_rows(batched / "metrics.csv")[0]) == list(read_rows(single / "metrics.csv")[0])
    assert list(read_rows(batched / "replay_checks.csv")[0]) == list(read_rows(single / "replay_checks.csv")[0])
    batched_config = (batched / "config.toml").read_text().replace(str(batched), "OUT")
    assert batched_config == (single / "config.toml").read_text().replace(str(single), "OUT")
    assert (batched / "sweep_point.toml").read_text() == (single / "sweep_point.toml").read_text()

    report = build_report([trained_sweeps / "batched"], tmp_path / "report", console=console_to())
    (group,) = report.groups
    assert len(group.runs) == 3
    returns = [summary_of(trained_sweeps / "batched" / f"seed={seed}")["eval_return"] for seed in (0, 1, 2)]
    assert group.mean("eval_return") == pytest.approx(sum(returns) / 3, rel=1e-12)


def assert_rows_close(actual, expected, rel):
    assert len(actual) == len(expected)
    for row_actual, row_expected in zip(actual, expected):
        assert row_actual.keys() == row_expected.keys()
        for column in row_expected:
            if column in TIMING_COLUMNS:
                continue
            try:
                expected = float(row_expected[column])
            except ValueError:  # empty cells and text such as the measure column
                assert row_actual[column] == row_expected[column], column
                continue
            assert float(row_actual[column]) == pytest.approx(expected, rel=rel, abs=1e-12, nan_ok=True), column


@pytest.mark.slow
def test_batched_seed_matches_seed_alone(trained_sweeps, tmp_path):
    batched = trained_sweeps / "batched"
    point = next(point for point in plan_sweep(trained_sweeps / "batched.toml").points if point.name == "seed=1")
    alone = tmp_path / "alone"
    train_seeds(point.config, [1], [alone], show_progress=False)

    # Each seed's slice of the stacked computation reads only that seed's values, so seed 1 of a
    # three-seed job and seed 1 alone agree. The tolerance, that of the multi-seed tests, allows rounding.
    assert_rows_close(read_rows(batched / "seed=1" / "metrics.csv"), read_rows(alone / "metrics.csv"), rel=1e-4)
    assert_rows_close(read_rows(batched / "seed=1" / "replay_checks.csv"), read_rows(alone / "replay_checks.csv"), rel=1e-4)
    weights = torch.load(batched / "seed=1" / "actor.pt", weights_only=True)["state_dict"]
    alone_weights = torch.load(alone / "actor.pt", weights_only=True)["state_dict"]
    other_weights = torch.load(batched / "seed=0" / "actor.pt", weights_only=True)["state_dict"]
    for key, value in alone_weights.items():
        torch.testing.assert_close(weights[key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert any(not torch.allclose(other_weights[key], value, rtol=1e-4, atol=1e-6) for key, value in alone_weights.items())

    # The single-run trainer's seed 1, as a sweep without batching trains it, agrees at the first evaluation.
    first_single = read_rows(trained_sweeps / "single" / "seed=1" / "metrics.csv")[0]
    first_batched = read_rows(batched / "seed=1" / "metrics.csv")[0]
    for column in ("eval_return", "eval_episode_length", "energy_acting_j", "energy_per_action_j", "buffer_size"):
        assert float(first_batched[column]) == pytest.approx(float(first_single[column]), rel=1e-4), column


@pytest.mark.slow
def test_resume_reruns_unfinished_seeds_of_group(trained_sweeps, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(trained_sweeps / "batched", out)
    before = {seed: summary_of(out / f"seed={seed}") for seed in (1, 2)}
    finished_summary = (out / "seed=0" / "summary.json").read_bytes()
    # A job stopped before it wrote these seeds' summaries (written last) leaves them unfinished.
    for seed in (1, 2):
        (out / f"seed={seed}" / "summary.json").unlink()
        (out / f"seed={seed}" / "actor.pt").unlink()

    result = run_sweep(trained_sweeps / "batched.toml", out, workers=1, console=console_to())
    assert result.skipped == ["seed=0"]
    assert result.finished == ["seed=1", "seed=2"]
    assert (out / "seed=0" / "summary.json").read_bytes() == finished_summary
    (group,) = read_index(out)["seed_groups"]
    assert group["batched_runs"] == ["seed=1", "seed=2"]
    for index, seed in enumerate((1, 2)):
        after = summary_of(out / f"seed={seed}")
        assert after["multiseed"]["seeds"] == [1, 2]
        assert after["multiseed"]["index"] == index
        for metric in ("eval_return", "energy_per_action_j", "buffer_size", "shrink_events"):
            assert after[metric] == pytest.approx(before[seed][metric], rel=1e-4), (seed, metric)
        assert (out / f"seed={seed}" / "actor.pt").is_file()


@pytest.mark.slow
def test_interrupted_group_is_trained_again(tmp_path, python_sigint_handler):
    base = {**TINY_BASE, "steps": 400, "eval-every": 100}
    path = write_sweep(tmp_path / "sweep.toml", base, {"seed": [0, 1]})
    out = tmp_path / "out"
    metrics = [out / f"seed={seed}" / "metrics.csv" for seed in (0, 1)]

    def interrupt_after_first_evaluation():
        # The first evaluation comes before learning starts, so 300 steps with updates follow the interrupt.
        while not all(path.exists() for path in metrics):
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_after_first_evaluation, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, out, workers=1, console=console_to())

    assert [run["status"] for run in read_index(out)["runs"]] == ["interrupted", "interrupted"]
    log = (out / "seed=0" / "train.log").read_text()
    pid = int(re.search(r"training seeds \[0, 1\] in process (\d+)", log).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    for seed in (0, 1):
        assert not (out / f"seed={seed}" / "summary.json").exists()
        assert (out / f"seed={seed}" / "config.toml").is_file()

    result = run_sweep(path, out, workers=1, console=console_to())
    assert result.finished == ["seed=0", "seed=1"]
    for index, seed in enumerate((0, 1)):
        run_dir = out / f"seed={seed}"
        assert summary_of(run_dir)["multiseed"]["index"] == index
        assert [int(row["step"]) for row in read_rows(run_dir / "metrics.csv")] == [100, 200, 300, 400]
        assert not (run_dir / "error.txt").exists()
