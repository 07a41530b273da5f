"""Configuration merging and validation, and the command line's handling of bad input."""

import pytest

from neurorl.cli import main
from neurorl.config import ConfigError, TrainConfig, build_config


def test_defaults_are_valid():
    assert build_config({}, {}) == TrainConfig()


def test_command_line_wins_over_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('T = 2\nlearning-starts = 50\nreplay = "fifo"\nhidden = [64, 64]\n')
    from neurorl.config import load_toml

    config = build_config(load_toml(path), {"T": "3"})
    assert (config.T, config.learning_starts, config.replay, config.hidden) == (3, 50, "fifo", (64, 64))


def test_every_problem_reported_together():
    with pytest.raises(ConfigError) as caught:
        build_config({}, {"T": "0", "env": "NoSuchEnv-v0", "actor": "lstm", "steps": "-5", "kappa": "1.5"})
    message = str(caught.value)
    for expected in ("--T=0", "--env='NoSuchEnv-v0'", "--actor='lstm'", "--steps=-5", "--kappa=1.5"):
        assert expected in message
    assert len(caught.value.problems) == 5


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("threshold", "-0.1", "--threshold=-0.1"),
        ("check_batch", "2000", "--check-batch=2000"),
        ("kappa", "0", "--kappa=0.0"),
        ("gamma", "1.5", "--gamma=1.5"),
        ("T", "two", "--T='two'"),
        ("hidden", "a,b", "--hidden"),
        ("no_such_option", "1", "--no-such-option"),
    ],
)
def test_single_bad_values(option, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        build_config({}, {option: value})


def test_cli_rejects_bad_options_before_any_file(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--T", "0", "--env", "Hoper-v5", "--actor", "x", "--steps", "-1", "--kappa", "2", "--out", str(out)])
    assert status == 2
    assert not out.exists()
    error = capsys.readouterr().err
    for expected in ("--T=0", "Hoper-v5", "Hopper-v5", "--actor='x'", "--steps=-1", "--kappa=2.0"):
        assert expected in error


def test_cli_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_compile_rejected_for_sac():
    with pytest.raises(ConfigError, match="--compile: only td3's losses are compiled"):
        build_config({}, {"compile": True, "algo": "sac"})


def test_compile_without_cxx_compiler_rejected(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        build_config({}, {"compile": True})
