"""Typed run configuration: defaults, TOML files, command-line overrides and validation.

Every field of :class:`TrainConfig` is a ``neurorl train`` option of the same name with
underscores written as dashes (``learning_starts`` is ``--learning-starts``). A TOML file given with
``--config`` may use either spelling; values given on the command line win over the file.
Validation collects every problem and reports them together, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import shutil
import tomllib
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ALGOS = ("td3", "sac")
CRITICS = ("mlp", "spiking-q")
TD_LOSSES = ("mse", "truncated")
READOUTS = ("last", "mean", "max")
REPLAYS = ("resilient", "fifo", "unbounded", "prioritized")
DEVICES = ("cpu", "cuda", "auto")
REDUCTIONS = ("sum", "mean")
BETA_MODES = ("constant", "standardize")
MEASURES = ("kdtree", "direct")
SAMPLERS = ("uniform", "prioritized")


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` lists every invalid option with its value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}")


@dataclass
class TrainConfig:
    """One training run. Defaults give the quickstart run; paper-scale settings live in configs/."""

    # Task and model.
    env: str = "Hopper-v5"
    actor: str = "popsan"
    algo: str = "td3"
    T: int = 5
    neuron: str = "leaky"
    encoder: str = "deterministic"
    surrogate: str = "rectangular"
    pop_size: int = 10
    hidden: tuple[int, ...] = (256, 256)
    readout: str = "last"
    branches: int = 2
    critic: str = "mlp"
    critic_T: int = 5
    td_loss: str = "mse"
    td_clip: float = 1.0

    # Run length and evaluation.
    steps: int = 10_000
    learning_starts: int = 2_000
    seed: int = 0
    eval_every: int = 2_500
    eval_episodes: int = 5
    out: str | None = None
    checkpoint_every: int = 5_000
    final_window: int = 125_000
    tensorboard: bool = True

    # TD3 (PopSAN's settings; batch 100, one update per environment step).
    batch_size: int = 100
    update_every: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    exploration_noise: float = 0.1
    target_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2

    # SAC (temperature α; the learning rates above apply to SAC too).
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    autotune: bool = True

    # Replay.
    replay: str = "resilient"
    capacity: int = 1_000_000
    check_interval: int = 1_000
    check_batch: int = 256
    threshold: float = 0.2
    kappa: float = 0.10
    min_size: int = 1_000
    beta: float = 1.0
    beta_mode: str = "constant"
    reduction: str = "sum"
    measure: str = "kdtree"
    sampler: str = "uniform"
    per_alpha: float = 0.6
    per_beta0: float = 0.4
    max_bytes: int | None = None
    compact: bool = False

    # Energy and machine.
    energy_model: str = "horowitz45-fp32"
    threads: int = 1
    linear_backend: str = "auto"
    retain_memory: bool = True
    device: str = "cpu"
    compile: bool = False

    def replay_options(self) -> dict[str, Any]:
        """Return the keyword options of :func:`neurorl.replay.make_replay` for ``self.replay``."""
        common: dict[str, Any] = {"max_bytes": self.max_bytes, "compact": self.compact}
        if self.replay == "fifo":
            return {**common, "capacity": self.capacity}
        if self.replay == "unbounded":
            return common
        if self.replay == "prioritized":
            return {**common, "capacity": self.capacity, "alpha": self.per_alpha, "beta0": self.per_beta0,
                    "beta_steps": self.steps}
        return {
            **common,
            "check_interval": self.check_interval,
            "check_batch": self.check_batch,
            "threshold": self.threshold,
            "kappa": self.kappa,
            "min_size": self.min_size,
            "beta": self.beta,
            "beta_mode": self.beta_mode,
            "reduction": self.reduction,
            "measure": self.measure,
            "sampler": self.sampler,
            "alpha": self.per_alpha,
            "beta0": self.per_beta0,
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data


FIELD_TYPES = {f.name: f for f in fields(TrainConfig)}


def option_name(field_name: str) -> str:
    """Return the command-line spelling of a config field (``learning_starts`` → ``--learning-starts``)."""
    return "--" + field_name.replace("_", "-")


def normalize_key(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def coerce_value(name: str, value: Any) -> Any:
    """Convert a TOML or command-line value to the field's type; raise ValueError naming the option."""
    if name == "hidden":
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        try:
            return tuple(int(size) for size in value)
        except (TypeError, ValueError):
            raise ValueError(f"{option_name(name)}={value!r}: expected comma-separated layer sizes such as 256,256") from None

    default = getattr(TrainConfig(), name)
    annotation = str(FIELD_TYPES[name].type)
    if value is None:
        return None
    if isinstance(default, bool) or annotation == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{option_name(name)}={value!r}: expected true or false")
    if isinstance(default, int) or "int" in annotation:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                raise ValueError(f"{option_name(name)}={value!r}: expected an integer") from None
            if as_float.is_integer():
                return int(as_float)
            raise ValueError(f"{option_name(name)}={value!r}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{option_name(name)}={value!r}: expected a number") from None
    return str(value)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a run configuration file; raise ConfigError for a missing file or unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"--config={str(path)!r}: file not found"])
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"--config={str(path)!r}: invalid TOML ({error})"]) from None
    if "train" in raw and isinstance(raw["train"], dict):
        raw = raw["train"]
    return {normalize_key(key): value for key, value in raw.items()}


def build_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    """Merge defaults, file values and command-line values (highest priority), then validate."""
    problems: list[str] = []
    merged: dict[str, Any] = {}
    for source in (file_values, cli_values):
        for key, value in source.items():
            name = normalize_key(key)
            if name not in FIELD_TYPES:
                problems.append(f"{option_name(name)}: unknown option (value {value!r}); run `neurorl train --help` for the list")
                continue
            try:
                merged[name] = coerce_value(name, value)
            except ValueError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError(problems)

    config = TrainConfig(**merged)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Raise ConfigError listing every invalid value of ``config``."""
    problems = _range_problems(config) + _choice_problems(config) + _replay_problems(config)
    if problems:
        raise ConfigError(problems)


def _range_problems(c: TrainConfig) -> list[str]:
    checks = [
        ("T", c.T >= 1, "must be at least 1 simulation step"),
        ("steps", c.steps >= 1, "must be a positive number of environment steps"),
        ("learning_starts", c.learning_starts >= 0, "must be 0 or more"),
        ("eval_every", c.eval_every >= 1, "must be a positive number of steps"),
        ("eval_episodes", c.eval_episodes >= 1, "must be at least 1"),
        ("checkpoint_every", c.checkpoint_every >= 1, "must be a positive number of steps"),
        ("final_window", c.final_window >= 1, "must be a positive number of steps"),
        ("seed", 0 <= c.seed < 2**32, "must be in [0, 2**32)"),
        ("batch_size", c.batch_size >= 1, "must be at least 1"),
        ("update_every", c.update_every >= 1, "must be at least 1"),
        ("gamma", 0.0 <= c.gamma <= 1.0, "must be in [0, 1]"),
        ("tau", 0.0 < c.tau <= 1.0, "must be in (0, 1]"),
        ("actor_lr", c.actor_lr > 0, "must be positive"),
        ("critic_lr", c.critic_lr > 0, "must be positive"),
        ("exploration_noise", c.exploration_noise >= 0, "must be 0 or more"),
        ("target_noise", c.target_noise >= 0, "must be 0 or more"),
        ("noise_clip", c.noise_clip >= 0, "must be 0 or more"),
        ("policy_delay", c.policy_delay >= 1, "must be at least 1"),
        ("branches", c.branches >= 1, "must be at least 1 dendritic branch"),
        ("critic_T", c.critic_T >= 1, "must be at least 1 simulation step"),
        ("td_clip", c.td_clip > 0, "the truncated TD loss needs a positive bound"),
        ("alpha_lr", c.alpha_lr > 0, "must be positive"),
        ("initial_alpha", c.initial_alpha > 0, "must be positive"),
        ("pop_size", c.pop_size >= 1, "must be at least 1 neuron per dimension"),
        ("hidden", len(c.hidden) >= 1 and all(size >= 1 for size in c.hidden), "must list at least one positive layer size"),
        ("threads", c.threads >= 1, "must be at least 1"),
    ]
    problems = [f"{option_name(name)}={getattr(c, name)!r}: {message}" for name, ok, message in checks if not ok]
    if 1 <= c.steps <= c.learning_starts:
        problems.append(
            f"--learning-starts={c.learning_starts!r}: not below --steps={c.steps!r}, so no update would run; "
            "lower --learning-starts or raise --steps"
        )
    for name in ("gamma", "tau", "actor_lr", "critic_lr", "threshold", "kappa", "beta"):
        value = getattr(c, name)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{option_name(name)}={value!r}: must be a finite number")
    return problems


def _choice_problems(c: TrainConfig) -> list[str]:
    from neurorl.snn import linear
    from neurorl.snn.actors import ACTORS
    from neurorl.snn.encoding import ENCODER_KINDS
    from neurorl.snn.neurons import NEURON_KINDS, SURROGATE_KINDS

    choices = [
        ("actor", sorted(ACTORS)),
        ("algo", ALGOS),
        ("critic", CRITICS),
        ("td_loss", TD_LOSSES),
        ("readout", READOUTS),
        ("replay", REPLAYS),
        ("neuron", NEURON_KINDS),
        ("encoder", ENCODER_KINDS),
        ("surrogate", SURROGATE_KINDS),
        ("device", DEVICES),
        ("reduction", REDUCTIONS),
        ("beta_mode", BETA_MODES),
        ("measure", MEASURES),
        ("sampler", SAMPLERS),
        ("linear_backend", linear.BACKENDS),
    ]
    problems = [
        f"{option_name(name)}={getattr(c, name)!r}: unknown value; choose one of {', '.join(options)}"
        for name, options in choices
        if getattr(c, name) not in options
    ]
    problems += _env_problems(c.env)
    problems += _energy_model_problems(c.energy_model)
    problems += _compile_problems(c)
    if c.linear_backend == "onednn" and not linear.onednn_available():
        problems.append("--linear-backend='onednn': this PyTorch build has no oneDNN linear product; use auto or blas")
    if c.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append("--device='cuda': no CUDA device is available; use --device cpu or auto")
    return problems


def _compile_problems(c: TrainConfig) -> list[str]:
    if not c.compile:
        return []
    if c.algo != "td3":
        return [f"--compile: only td3's losses are compiled, not --algo={c.algo!r}; drop --compile or use --algo td3"]
    if c.device != "cuda" and not any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name):
        return ["--compile: torch.compile needs a C++ compiler on CPU and none was found (g++, c++, clang++ or $CXX); "
                "install one or drop --compile"]
    return []


def _env_problems(env_id: str) -> list[str]:
    import gymnasium as gym

    import neurorl.envs  # noqa: F401  (registers the neurorl/ navigation tasks)

    if env_id in gym.envs.registry:
        return _env_space_problems(env_id)
    similar = difflib.get_close_matches(env_id, list(gym.envs.registry), n=5, cutoff=0.6)
    hint = f"; similar registered ids: {', '.join(similar)}" if similar else "; run `neurorl envs` for the list"
    return [f"--env={env_id!r}: not a registered Gymnasium environment{hint}"]


@functools.lru_cache(maxsize=64)
def _env_space_problems(env_id: str) -> list[str]:
    """Build the environment once to check that it exists in this install and has Box actions."""
    import gymnasium as gym

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id)
    except Exception as error:  # noqa: BLE001  (any failure to build is reported as the env's problem)
        return [f"--env={env_id!r}: cannot be created ({type(error).__name__}: {error})"]
    space = env.action_space
    env.close()
    if not isinstance(space, gym.spaces.Box):
        return [f"--env={env_id!r}: has a {type(space).__name__} action space; NeuroRL's actors need continuous (Box) actions"]
    return []


def _energy_model_problems(name: str) -> list[str]:
    if name.endswith(".toml"):
        return [] if Path(name).is_file() else [f"--energy-model={name!r}: file not found"]
    try:
        from neurorl.energy import list_energy_models
    except ImportError:
        return []
    known = [model["name"] for model in list_energy_models()]
    if name in known:
        return []
    return [f"--energy-model={name!r}: unknown model; choose one of {', '.join(known)} or give a .toml file"]


def _replay_problems(c: TrainConfig) -> list[str]:
    problems = []
    if c.replay in ("fifo", "prioritized") and c.capacity < 1:
        problems.append(f"--capacity={c.capacity!r}: must be at least 1 transition")
    if c.max_bytes is not None and c.max_bytes < 1:
        problems.append(f"--max-bytes={c.max_bytes!r}: must be a positive number of bytes")
    if not 0.0 < c.kappa < 1.0:
        problems.append(f"--kappa={c.kappa!r}: the shrink fraction κ must be in (0, 1), for example 0.1")
    if c.threshold < 0:
        problems.append(f"--threshold={c.threshold!r}: the discrepancy threshold must be 0 or more")
    if c.check_interval < 1:
        problems.append(f"--check-interval={c.check_interval!r}: must be a positive number of steps")
    if c.check_batch < 1:
        problems.append(f"--check-batch={c.check_batch!r}: must be at least 1 transition")
    if c.min_size < 1:
        problems.append(f"--min-size={c.min_size!r}: must be at least 1 transition")
    if c.check_batch > c.min_size:
        problems.append(
            f"--check-batch={c.check_batch!r}: larger than --min-size={c.min_size!r}; the check batch must fit in the smallest buffer"
        )
    if c.beta <= 0:
        problems.append(f"--beta={c.beta!r}: the discrepancy scale β must be positive")
    if not 0.0 <= c.per_alpha <= 1.0:
        problems.append(f"--per-alpha={c.per_alpha!r}: must be in [0, 1]")
    if not 0.0 <= c.per_beta0 <= 1.0:
        problems.append(f"--per-beta0={c.per_beta0!r}: must be in [0, 1]")
    if c.batch_size > c.min_size and c.replay == "resilient":
        problems.append(f"--batch-size={c.batch_size!r}: larger than --min-size={c.min_size!r}; a shrunk buffer could not fill a batch")
    return problems


def default_run_dir(config: TrainConfig, timestamp: str) -> str:
    """Return runs/<env>_<actor>_T<T>_<replay>_seed<seed>_<timestamp> with path-safe characters."""
    env = config.env.replace("/", "-")
    return str(Path("runs") / f"{env}_{config.actor}_T{config.T}_{config.replay}_seed{config.seed}_{timestamp}")
