"""`neurorl sweep`: grid validation, run names, seed groups, skip and failure rules, local and Ray backends."""

import _thread
import json
import os
import statistics
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree

import gymnasium as gym
import pytest
from matplotlib.image import imread
from rich.console import Console

from neurorl.analysis.plots import FIGURE_NAMES
from neurorl.analysis.report import build_report
from neurorl.config import ConfigError
from neurorl.experiment import sweep_backends
from neurorl.experiment.rundir import to_toml, write_json_atomic
from neurorl.experiment.sweep import run_sweep
from neurorl.experiment.sweep_grid import group_by_seed, plan_sweep, run_name

NAV = "neurorl/2DNav-v1"
# Small enough for CI on two cores, large enough that resilient replay checks and shrinks.
E2E_BASE = {
    "env": NAV, "actor": "popsan", "steps": 2000, "learning-starts": 500, "hidden": "64,64", "eval-every": 1000,
    "eval-episodes": 2, "check-interval": 500, "min-size": 500, "check-batch": 128,
}
TINY_BASE = {
    "env": NAV, "T": 1, "steps": 200, "learning-starts": 100, "hidden": "16,16", "eval-every": 200, "eval-episodes": 1,
    "check-interval": 100, "min-size": 100, "check-batch": 32, "batch-size": 32, "checkpoint-every": 100,
}
EXPLODING_ENV = "neurorl_test/Exploding-v0"


def quiet_console():
    return Console(file=open("/dev/null", "w"), width=200)


def toml_value(value):
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_sweep(path, base, grid):
    lines = ["[base]"] + [f"{key} = {toml_value(value)}" for key, value in base.items()]
    lines += ["", "[grid]"] + [f"{key} = {toml_value(value)}" for key, value in grid.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def forbid_training(monkeypatch):
    def fail(job):
        raise AssertionError(f"the sweep started training {job.name}")

    monkeypatch.setattr(sweep_backends, "run_subprocess_job", fail)
    monkeypatch.setattr(sweep_backends, "run_in_process_job", fail)


def fake_finished_run(run_dir, config):
    """Write what a finished run leaves behind, as far as the sweep looks at it."""
    run_dir.mkdir(parents=True)
    values = config.to_dict()
    values["out"] = str(run_dir)
    (run_dir / "config.toml").write_text(to_toml(values))
    write_json_atomic(run_dir / "summary.json", {"eval_return": 0.0})


# --------------------------------------------------------------------------- grid and validation


def test_invalid_grid_lists_every_problem(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        '[base]\nenv = "neurorl/2DNav-v1"\nstepz = 10\nout = "runs"\nsteps = -5\n\n'
        '[grid]\nT = [1, 0]\nreplay = ["fifo", "fifoo"]\nseed = []\nkappa = 0.1\nthreads = [1, 1]\n\n'
        "[extra]\nx = 1\n"
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as caught:
        run_sweep(path, out, workers=0, backend="slurm", console=quiet_console())
    message = str(caught.value)
    expected = [
        "--workers=0", "--backend='slurm'", "[extra]: unknown table", "[base] stepz: unknown option",
        "did you mean steps", "[base] out: set by the sweep", "[grid] seed = []: empty list",
        "[grid] kappa = 0.1: expected a list", "threads = [1, 1]: 2 values give the run name threads=1",
        "--steps=-5: must be a positive number of environment steps (from [base])",
        "--T=0: must be at least 1 simulation step (from [grid] T = 0)",
        "--replay='fifoo': unknown value", '(from [grid] replay = "fifoo")',
    ]
    for fragment in expected:
        assert fragment in message, fragment
    assert len(caught.value.problems) == len(expected) - 2
    assert not out.exists()


def test_combination_problem_names_points(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", {"env": NAV}, {"check-batch": [512], "min-size": [256, 1024]})
    with pytest.raises(ConfigError) as caught:
        plan_sweep(path)
    (problem,) = caught.value.problems
    assert "--check-batch=512: larger than --min-size=256" in problem
    assert "in 1 of 2 grid points: check_batch=512__min_size=256" in problem


def test_same_option_in_base_and_grid(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", {"env": NAV, "seed": 3}, {"seed": [0, 1]})
    with pytest.raises(ConfigError, match="'seed' is set in both"):
        plan_sweep(path)


def test_missing_grid_and_file(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('[base]\nenv = "neurorl/2DNav-v1"\n')
    with pytest.raises(ConfigError, match=r"\[grid\] is missing or empty"):
        plan_sweep(path)
    with pytest.raises(ConfigError, match="not found"):
        plan_sweep(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[grid\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        plan_sweep(tmp_path / "broken.toml")


def test_grid_expansion_and_names(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", {"steps": 100, "learning-starts": 50},
                       {"env": [NAV, "neurorl/2DNav-v2"], "hidden": [[16, 16], "32,8"], "seed": [0, 1, 2]})
    plan = plan_sweep(path)
    assert len(plan.points) == 12
    names = [point.name for point in plan.points]
    assert names[0] == "env=neurorl-2DNav-v1__hidden=16-16__seed=0"
    assert len(set(names)) == 12
    for name in names:
        assert "/" not in name
        assert "," not in name
    assert plan.points[4].config.hidden == (32, 8)
    assert plan.points[4].config.env == NAV


def test_long_run_name_is_cut_with_hash():
    values = {"energy_model": "x" * 300, "seed": 1}
    name = run_name(values)
    assert len(name) <= 160
    assert name != run_name({"energy_model": "x" * 300, "seed": 2})
    assert run_name({}) == "base"


def test_seed_groups(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", {"env": NAV}, {"T": [1, 2], "seed": [0, 1, 2], "replay": ["fifo", "resilient"]})
    groups = group_by_seed(plan_sweep(path).points)
    assert [group.name for group in groups] == ["T=1__replay=fifo", "T=1__replay=resilient", "T=2__replay=fifo", "T=2__replay=resilient"]
    for group in groups:
        assert group.seeds == [0, 1, 2]
        configs = [point.config.to_dict() | {"seed": None} for point in group.points]
        assert all(config == configs[0] for config in configs)


def test_ray_missing_is_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    path = write_sweep(tmp_path / "sweep.toml", {"env": NAV}, {"seed": [0]})
    with pytest.raises(ConfigError, match=r"pip install 'neurorl\[ray\]'"):
        run_sweep(path, tmp_path / "out", workers=1, backend="ray", console=quiet_console())
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- skip rules


def test_rerun_skips_finished_runs(tmp_path, monkeypatch):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"replay": ["fifo", "resilient"], "seed": [0, 1]})
    out = tmp_path / "out"
    for point in plan_sweep(path).points:
        fake_finished_run(out / point.name, point.config)
    forbid_training(monkeypatch)

    result = run_sweep(path, out, workers=2, console=quiet_console())
    assert len(result.skipped) == 4
    assert result.exit_code == 0
    index = json.loads((out / "sweep.json").read_text())
    assert [run["status"] for run in index["runs"]] == ["skipped"] * 4
    assert index["counts"]["skipped"] == 4
    assert (out / "sweep.toml").read_text() == path.read_text()


def test_finished_run_with_other_options_rejected(tmp_path, monkeypatch):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1]})
    out = tmp_path / "out"
    point = plan_sweep(path).points[1]
    point.config.steps = 999
    fake_finished_run(out / point.name, point.config)
    forbid_training(monkeypatch)

    with pytest.raises(ConfigError) as caught:
        run_sweep(path, out, workers=1, console=quiet_console())
    assert "seed=1 already contains a finished run with other options (steps: 999 in the run, 200 in the sweep)" in str(caught.value)
    assert not (out / "sweep.json").exists()


def test_interrupt_stops_training_processes(tmp_path, monkeypatch, python_sigint_handler):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0, 1, 2]})
    out = tmp_path / "out"
    sleeper = "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(600)"
    monkeypatch.setattr(sweep_backends, "train_command",
                        lambda job: [sys.executable, "-c", sleeper, str(job.run_dir / "pid")])

    def interrupt_when_started():
        pid_files = [out / f"seed={seed}" / "pid" for seed in (0, 1)]
        while not all(pid_file.exists() and pid_file.read_text() for pid_file in pid_files):
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, out, workers=2, console=quiet_console(), batch_seeds=False)

    index = json.loads((out / "sweep.json").read_text())
    assert [run["status"] for run in index["runs"]] == ["interrupted"] * 3
    for seed in (0, 1):
        pid = int((out / f"seed={seed}" / "pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (out / "seed=2" / "pid").exists()


# --------------------------------------------------------------------------- real training


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_sweep_and_report_end_to_end(tmp_path, monkeypatch):
    path = write_sweep(tmp_path / "sweep.toml", E2E_BASE, {"T": [1, 2], "replay": ["fifo", "resilient"], "seed": [0, 1]})
    out = tmp_path / "sweep"
    result = run_sweep(path, out, workers=2, console=quiet_console())
    assert result.exit_code == 0
    assert len(result.finished) == 8

    index = json.loads((out / "sweep.json").read_text())
    assert index["counts"]["finished"] == 8
    assert [len(group["runs"]) for group in index["seed_groups"]] == [2, 2, 2, 2]
    expected = {}
    for run in index["runs"]:
        run_dir = out / run["dir"]
        assert run["status"] == "finished", run
        assert (run_dir / "train.log").is_file()
        summary = summary_of(run_dir)
        assert (summary["T"], summary["replay"], summary["seed"]) == (run["values"]["T"], run["values"]["replay"], run["values"]["seed"])
        expected.setdefault((summary["T"], summary["replay"]), []).append(summary)
    assert any(summary["shrink_events"] > 0 for summary in expected[(1, "resilient")] + expected[(2, "resilient")])

    report_dir = tmp_path / "report"
    report = build_report([out], report_dir, console=quiet_console())
    assert len(report.groups) == 4
    for group in report.groups:
        summaries = expected[(group.options["T"], group.options["replay"])]
        assert len(group.runs) == 2
        for metric in ("eval_return", "energy_per_action_j", "return_per_joule", "buffer_size", "shrink_events"):
            values = [float(summary[metric]) for summary in summaries]
            assert group.mean(metric) == pytest.approx(statistics.mean(values), rel=1e-12)
            assert group.std(metric) == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-300)
    for name in FIGURE_NAMES:
        assert imread(report_dir / f"{name}.png").shape[0] > 100, name
        assert ElementTree.parse(report_dir / f"{name}.svg").getroot().tag.endswith("svg"), name

    forbid_training(monkeypatch)
    rerun = run_sweep(path, out, workers=2, console=quiet_console())
    assert len(rerun.skipped) == 8
    assert rerun.exit_code == 0


HELPER = '''
import runpy
import sys

import gymnasium as gym

from neurorl.envs.nav2d import Nav2DEnv


class ExplodingNav(Nav2DEnv):
    """A navigation task whose simulator fails after 150 steps."""

    steps_taken = 0

    def step(self, action):
        ExplodingNav.steps_taken += 1
        if ExplodingNav.steps_taken > 150:
            raise RuntimeError("simulated simulator failure at step 151 [/physics]")
        return super().step(action)


gym.register("{env}", entry_point=ExplodingNav, max_episode_steps=200)
# Run the module the sweep would run with `python -m`: neurorl for a run, the group trainer for a seed group.
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


@pytest.fixture
def exploding_env(tmp_path, monkeypatch):
    """Register an env that fails at run time, in this process (for validation) and in every training subprocess."""
    helper = tmp_path / "train_with_exploding_env.py"
    helper.write_text(HELPER.replace("{env}", EXPLODING_ENV))
    original = sweep_backends.train_command
    monkeypatch.setattr(sweep_backends, "train_command", lambda job: [sys.executable, str(helper), *original(job)[2:]])
    gym.register(EXPLODING_ENV, entry_point="neurorl.envs.nav2d:Nav2DEnv", max_episode_steps=200)
    yield EXPLODING_ENV
    del gym.envs.registry[EXPLODING_ENV]


@pytest.mark.slow
@pytest.mark.parametrize("batch_seeds", [True, False])
def test_failed_run_recorded_others_finish(tmp_path, exploding_env, batch_seeds):
    base = {key: value for key, value in TINY_BASE.items() if key != "env"}
    path = write_sweep(tmp_path / "sweep.toml", base, {"env": [NAV, exploding_env], "seed": [0, 1]})
    out = tmp_path / "out"
    result = run_sweep(path, out, workers=2, console=quiet_console(), batch_seeds=batch_seeds)

    assert result.exit_code == 1
    assert sorted(result.finished) == ["env=neurorl-2DNav-v1__seed=0", "env=neurorl-2DNav-v1__seed=1"]
    assert sorted(result.failed) == ["env=neurorl_test-Exploding-v0__seed=0", "env=neurorl_test-Exploding-v0__seed=1"]
    index = {run["name"]: run for run in json.loads((out / "sweep.json").read_text())["runs"]}
    for name in result.failed:
        assert index[name]["status"] == "failed"
        assert index[name]["batched"] is batch_seeds
        assert index[name]["returncode"] == 1
        assert "simulated simulator failure" in index[name]["error"]
        assert ("multi-seed job env=neurorl_test-Exploding-v0 (seeds 0, 1)" in index[name]["error"]) is batch_seeds
        error_text = (out / name / "error.txt").read_text()
        assert "Traceback" in error_text
        assert "simulated simulator failure at step 151" in error_text
        assert not (out / name / "summary.json").exists()
    for name in result.finished:
        assert (out / name / "summary.json").is_file()
        assert not (out / name / "error.txt").exists()


@pytest.mark.slow
def test_interrupted_run_is_resumed(tmp_path):
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"seed": [0]})
    out = tmp_path / "out"
    assert run_sweep(path, out, workers=1, console=quiet_console()).exit_code == 0
    run_dir = out / "seed=0"
    first = summary_of(run_dir)
    # A run killed after its last checkpoint has everything but summary.json.
    (run_dir / "summary.json").unlink()

    result = run_sweep(path, out, workers=1, console=quiet_console())
    assert result.finished == ["seed=0"]
    assert result.runs[0].resumed
    assert "--resume" in (run_dir / "train.log").read_text()
    assert summary_of(run_dir)["eval_return"] == pytest.approx(first["eval_return"])


@pytest.mark.slow
def test_ray_backend_runs_grid(tmp_path):
    ray = pytest.importorskip("ray")
    # td3 seeds train as one multi-seed Ray task; sac, which the multi-seed trainer rejects, one task per seed.
    path = write_sweep(tmp_path / "sweep.toml", TINY_BASE, {"algo": ["td3", "sac"], "seed": [0, 1]})
    out = tmp_path / "ray"
    result = run_sweep(path, out, workers=2, backend="ray", console=quiet_console())
    assert result.exit_code == 0
    assert sorted(result.finished) == ["algo=sac__seed=0", "algo=sac__seed=1", "algo=td3__seed=0", "algo=td3__seed=1"]
    assert not ray.is_initialized()
    index = json.loads((out / "sweep.json").read_text())
    assert index["backend"] == "ray"
    assert [group["execution"] for group in index["seed_groups"]] == ["multi-seed", "per-seed"]
    for name in ("algo=td3__seed=0", "algo=td3__seed=1"):
        assert "training seeds [0, 1] in process" in (out / name / "train.log").read_text()
        assert summary_of(out / name)["multiseed"]["seeds"] == [0, 1]
    for name in ("algo=sac__seed=0", "algo=sac__seed=1"):
        assert "training " + name in (out / name / "train.log").read_text()
        assert "multiseed" not in summary_of(out / name)

    # The same grid points trained in subprocesses by the local backend give the same runs.
    td3_only = write_sweep(tmp_path / "td3.toml", TINY_BASE, {"algo": ["td3"], "seed": [0, 1]})
    assert run_sweep(td3_only, tmp_path / "local", workers=1, console=quiet_console()).exit_code == 0
    for name in ("algo=td3__seed=0", "algo=td3__seed=1"):
        assert summary_of(out / name)["eval_return"] == pytest.approx(summary_of(tmp_path / "local" / name)["eval_return"], rel=1e-6)
