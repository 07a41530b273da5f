"""`neurorl report` on synthetic run directories: grouping, mean and std over seeds, Pareto front, figures."""

import csv
import json
import math
import statistics
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from neurorl.analysis.plots import FIGURE_NAMES, mean_curve, plot_policy_entropy
from neurorl.analysis.report import build_report
from neurorl.analysis.runs import ReportError, find_runs, load_run
from neurorl.analysis.tables import group_runs, pareto_front, write_tables
from neurorl.config import TrainConfig
from neurorl.experiment.rundir import to_toml, write_csv_atomic, write_json_atomic

METRIC_COLUMNS = [
    "step", "eval_return", "eval_return_std", "eval_episode_length", "buffer_size", "dis", "shrink_events",
    "sps", "energy_acting_j", "energy_learning_j", "energy_replay_j", "energy_per_action_j",
    "return_per_joule", "wall_time_s",
]
CHECK_COLUMNS = ["step", "dis", "direct_dis", "threshold", "removed", "size_before", "size_after", "check_batch", "point_dim", "measure"]
TABLE_METRICS = ["eval_return", "energy_per_action_j", "return_per_joule", "buffer_size", "shrink_events"]


def quiet_console():
    return Console(file=open("/dev/null", "w"), width=200)


def write_run(path, rng, *, entropy=False, steps=(1000, 2000, 3000), **options):
    """Write a run directory with random but consistent figures; return its summary."""
    config = TrainConfig(**{"env": "neurorl/2DNav-v1", **options})
    config.out = str(path)
    path.mkdir(parents=True)
    (path / "config.toml").write_text(to_toml(config.to_dict()))

    resilient = config.replay == "resilient"
    size, shrinks, metrics, checks = 0, 0, [], []
    for step in steps:
        size += 1000
        if resilient:
            removed = int(rng.integers(0, 2)) * size // 10
            checks.append({"step": step, "dis": float(rng.uniform(0.05, 40.0)), "direct_dis": 50.0, "threshold": 0.2,
                           "removed": removed, "size_before": size, "size_after": size - removed, "check_batch": 128,
                           "point_dim": 24, "measure": "kdtree"})
            size -= removed
            shrinks += removed > 0
        row = {"step": step, "eval_return": float(rng.normal(-100, 30)), "eval_return_std": 5.0,
               "eval_episode_length": 200.0, "buffer_size": size, "dis": checks[-1]["dis"] if checks else math.nan,
               "shrink_events": shrinks, "energy_per_action_j": float(rng.uniform(1e-9, 5e-9)),
               "return_per_joule": float(rng.normal(-2e8, 1e7))}
        if entropy:
            row["policy_entropy"] = float(rng.uniform(-1.0, 1.0))
        metrics.append(row)
    write_csv_atomic(path / "metrics.csv", metrics, METRIC_COLUMNS + (["policy_entropy"] if entropy else []))
    write_csv_atomic(path / "replay_checks.csv", checks, CHECK_COLUMNS)

    last = metrics[-1]
    summary = {
        "eval_return": last["eval_return"], "eval_return_max": max(row["eval_return"] for row in metrics),
        "energy_per_action_j": last["energy_per_action_j"], "ann_energy_per_action_j": 2.6e-8,
        "snn_ann_energy_ratio": last["energy_per_action_j"] / 2.6e-8, "return_per_joule": last["return_per_joule"],
        "energy_j": {"acting": 1e-6, "learning": 0.05, "replay": 1e-5, "total": 0.050011},
        "buffer_size": size, "shrink_events": shrinks, "steps": steps[-1], "sps": 60.0,
        "energy_model": "horowitz45-fp32", "actor": config.actor, "env": config.env, "T": config.T,
        "replay": config.replay, "seed": config.seed,
    }
    write_json_atomic(path / "summary.json", summary)
    return summary


def write_sweep(root):
    """Write three groups (T=1 fifo, T=1 resilient, T=2 resilient) with 3, 2 and 1 seeds."""
    rng = np.random.default_rng(7)
    layout = [(1, "fifo", 3), (1, "resilient", 2), (2, "resilient", 1)]
    for T, replay, seeds in layout:
        for seed in range(seeds):
            write_run(root / f"T={T}__replay={replay}__seed={seed}", rng, T=T, replay=replay, seed=seed,
                      threads=1 + seed, device="cpu" if seed % 2 else "auto",
                      linear_backend="blas" if seed % 2 else "onednn")
    (root / "sweep.json").write_text("{}")
    return root


@pytest.fixture
def sweep_dir(tmp_path):
    return write_sweep(tmp_path / "sweep")


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    """Build the report of the synthetic sweep once, because drawing the figures takes seconds."""
    root = tmp_path_factory.mktemp("report")
    sweep = write_sweep(root / "sweep")
    result = build_report([sweep], root / "report", console=quiet_console())
    return sweep, root / "report", result


def groups_of(*paths):
    return group_runs([load_run(path) for path in find_runs(list(paths))])


def read_summaries(root):
    """Group summary.json files by (T, replay) independently of the report code."""
    groups = {}
    for path in sorted(root.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        groups.setdefault((summary["T"], summary["replay"]), []).append(summary)
    return groups


@pytest.mark.slow
def test_report_means_and_stds(built_report):
    sweep_dir, report_dir, result = built_report
    expected = read_summaries(sweep_dir)
    assert len(result.groups) == len(expected) == 3

    report = json.loads((report_dir / "report.json").read_text())
    by_label = {group["label"]: group for group in report["groups"]}
    for (T, replay), summaries in expected.items():
        group = by_label[f"T={T}, replay={replay}"]
        assert group["n_seeds"] == len(summaries)
        assert sorted(group["seeds"]) == sorted(summary["seed"] for summary in summaries)
        for metric in TABLE_METRICS:
            values = [float(summary[metric]) for summary in summaries]
            assert group["metrics"][metric]["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
            if len(values) > 1:
                assert group["metrics"][metric]["std"] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-300)
            else:
                assert group["metrics"][metric]["std"] is None


@pytest.mark.slow
def test_report_csv_matches_json(built_report):
    _, report_dir, _ = built_report
    report = json.loads((report_dir / "report.json").read_text())
    with (report_dir / "report.csv").open() as stream:
        rows = {row["group"]: row for row in csv.DictReader(stream)}
    assert set(rows) == {group["label"] for group in report["groups"]}
    for group in report["groups"]:
        row = rows[group["label"]]
        assert int(row["n_seeds"]) == group["n_seeds"]
        assert row["T"] == str(group["varying"]["T"])
        assert row["replay"] == group["varying"]["replay"]
        assert float(row["eval_return_mean"]) == pytest.approx(group["metrics"]["eval_return"]["mean"])
        assert row["pareto_front"] == str(group["pareto_front"])


def test_groups_ignore_machine_options(sweep_dir):
    groups = groups_of(sweep_dir)
    assert sorted(len(group.runs) for group in groups) == [1, 2, 3]
    for group in groups:
        assert set(group.varying) == {"T", "replay"}


def test_pareto_front_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "runs"
    for index in range(14):
        # Several groups share a return or an energy so that ties are exercised.
        write_run(root / f"run{index}", rng, T=1 + index, seed=0, replay="fifo")
    for index in (3, 4):
        tied = json.loads((root / f"run{index}" / "summary.json").read_text())
        twin = json.loads((root / "run2" / "summary.json").read_text())
        tied["eval_return"] = twin["eval_return"]
        if index == 4:
            tied["energy_per_action_j"] = twin["energy_per_action_j"]
        write_json_atomic(root / f"run{index}" / "summary.json", tied)

    groups = groups_of(root)
    points = {}
    for path in root.iterdir():
        summary = json.loads((path / "summary.json").read_text())
        points[f"T={summary['T']}"] = (summary["eval_return"], summary["energy_per_action_j"])

    def dominated(label):
        ret, energy = points[label]
        return any(r >= ret and e <= energy and (r > ret or e < energy) for other, (r, e) in points.items() if other != label)

    expected = sorted(label for label in points if not dominated(label))
    assert sorted(group.label for group in groups if group.pareto) == expected
    assert 1 <= len(expected) < len(points)


def test_pareto_front_ties_and_nan():
    points = [(1.0, 1.0), (1.0, 1.0), (0.5, 2.0), (2.0, 3.0), (math.nan, 0.1), (3.0, math.nan)]
    assert pareto_front(points) == [True, True, False, True, False, False]
    assert pareto_front([]) == []


def test_pareto_front_per_env(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "runs"
    write_run(root / "nav", rng, env="neurorl/2DNav-v1", seed=0)
    write_run(root / "nav2", rng, env="neurorl/2DNav-v2", seed=0)
    write_run(root / "nav2-dominated", rng, env="neurorl/2DNav-v2", seed=0, T=2)
    summary = json.loads((root / "nav" / "summary.json").read_text())
    nav2 = json.loads((root / "nav2" / "summary.json").read_text())
    nav2["eval_return"] = summary["eval_return"] - 10.0
    nav2["energy_per_action_j"] = summary["energy_per_action_j"] * 3
    write_json_atomic(root / "nav2" / "summary.json", nav2)
    dominated = json.loads((root / "nav2-dominated" / "summary.json").read_text())
    dominated["eval_return"] = nav2["eval_return"] - 1.0
    dominated["energy_per_action_j"] = nav2["energy_per_action_j"] * 2
    write_json_atomic(root / "nav2-dominated" / "summary.json", dominated)

    front = {(group.env, group.options["T"]) for group in groups_of(root) if group.pareto}
    # nav2 is dominated by nav's group, but only groups of the same environment are compared.
    assert front == {("neurorl/2DNav-v1", 5), ("neurorl/2DNav-v2", 5)}


def test_missing_path_error(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ReportError, match="no-such-dir.*does not exist"):
        build_report([missing], tmp_path / "report", console=quiet_console())
    assert not (tmp_path / "report").exists()


def test_path_without_runs_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ReportError, match="empty.*contains no run"):
        build_report([empty], tmp_path / "report", console=quiet_console())
    assert not (tmp_path / "report").exists()


def test_every_bad_path_named(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ReportError) as caught:
        build_report([tmp_path / "a", tmp_path / "file.txt"], tmp_path / "report", console=quiet_console())
    assert "a' does not exist" in str(caught.value)
    assert "file.txt' is not a directory" in str(caught.value)


def test_no_paths_error(tmp_path):
    with pytest.raises(ReportError, match="no run directories given"):
        build_report([], tmp_path / "report", console=quiet_console())


def test_run_given_twice_counted_once(sweep_dir):
    one_run = sweep_dir / "T=2__replay=resilient__seed=0"
    assert len(find_runs([sweep_dir, one_run])) == 6
    assert sum(len(group.runs) for group in groups_of(sweep_dir, one_run)) == 6


@pytest.mark.slow
def test_plot_files_valid(built_report):
    _, report_dir, result = built_report
    for name in FIGURE_NAMES:
        png = report_dir / f"{name}.png"
        svg = report_dir / f"{name}.svg"
        assert png in result.files
        assert svg in result.files
        image = imread(png)
        assert image.ndim == 3, name
        assert min(image.shape[:2]) > 100, name
        assert image.std() > 0, f"{name}.png is blank"
        root = ElementTree.parse(svg).getroot()
        assert root.tag.endswith("svg"), name


def test_entropy_plot_without_column(sweep_dir):
    groups = groups_of(sweep_dir)
    figure = plot_policy_entropy(groups, {group.label: "C0" for group in groups})
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert any("not recorded" in text for text in texts)
    assert all(not axes.lines for axes in figure.axes)


def test_entropy_plot_with_column(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "runs"
    write_run(root / "a", rng, seed=0, entropy=True)
    write_run(root / "b", rng, seed=1, entropy=True)
    write_run(root / "c", rng, seed=0, T=2)
    groups = groups_of(root)
    figure = plot_policy_entropy(groups, {group.label: "C0" for group in groups})
    axes = figure.axes[0]
    assert len(axes.lines) == 1
    expected = np.mean([load_run(root / name).metrics["policy_entropy"] for name in ("a", "b")], axis=0)
    np.testing.assert_allclose(axes.lines[0].get_ydata(), expected)
    assert any("T=2" in text.get_text() and "not recorded" in text.get_text() for text in axes.texts)


def test_mean_curve_common_steps(tmp_path):
    rng = np.random.default_rng(2)
    write_run(tmp_path / "a", rng, seed=0, steps=(1000, 2000, 3000))
    write_run(tmp_path / "b", rng, seed=1, steps=(1000, 2000))
    runs = [load_run(tmp_path / name) for name in ("a", "b")]
    steps, mean, std = mean_curve(runs, "eval_return")
    np.testing.assert_array_equal(steps, [1000, 2000])
    matrix = np.array([run.metrics["eval_return"][:2] for run in runs])
    np.testing.assert_allclose(mean, matrix.mean(axis=0))
    np.testing.assert_allclose(std, matrix.std(axis=0, ddof=1))


def test_single_run_has_no_std(tmp_path):
    rng = np.random.default_rng(4)
    write_run(tmp_path / "only", rng, seed=0)
    (group,) = groups_of(tmp_path / "only")
    assert math.isnan(group.std("eval_return"))
    assert group.pareto
    assert group.label == "env=neurorl/2DNav-v1, actor=popsan, T=5, replay=resilient"


def test_null_summary_value_is_nan(tmp_path):
    rng = np.random.default_rng(6)
    write_run(tmp_path / "runs" / "a", rng, seed=0)
    summary = json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())
    summary["return_per_joule"] = None
    write_json_atomic(tmp_path / "runs" / "a" / "summary.json", summary)
    groups = groups_of(tmp_path / "runs")
    assert math.isnan(groups[0].mean("return_per_joule"))
    write_tables(groups, tmp_path, energy_models=["horowitz45-fp32"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["groups"][0]["metrics"]["return_per_joule"]["mean"] is None
