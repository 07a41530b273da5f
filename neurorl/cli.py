"""The ``neurorl`` command line: train, sweep, report, energy and envs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape

from neurorl.config import FIELD_TYPES, ConfigError, TrainConfig, build_config, default_run_dir, load_toml, option_name

EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input to a command other than train's options; printed as is, exit status 2."""

HELP = {
    "env": "Gymnasium environment id with a continuous (Box) action space; `neurorl envs` lists them",
    "actor": "actor family: popsan, mdcsan, ilcsan, bptsan (spiking) or ann",
    "algo": "learning algorithm: td3 or sac",
    "readout": "ilcsan: membrane statistic over T read as the action (last, mean, max)",
    "branches": "bptsan: dendritic branches per neuron",
    "critic": "critic: mlp, or spiking-q (Q from the membrane voltage of non-spiking output neurons)",
    "critic_T": "simulation steps of a spiking-q critic",
    "td_loss": "mse, or truncated (TD error clipped at ±td-clip in the gradient)",
    "td_clip": "bound on the TD error of the truncated TD loss",
    "alpha_lr": "SAC: learning rate of the temperature α",
    "initial_alpha": "SAC: initial temperature α (the fixed α without --autotune)",
    "autotune": "SAC: learn α towards the target entropy −act_dim",
    "T": "simulation steps per action of a spiking actor",
    "neuron": "hidden neuron: leaky (snnTorch Leaky) or clif (PopSAN's current-based LIF)",
    "encoder": "population encoder spikes: deterministic or bernoulli",
    "surrogate": "surrogate gradient: rectangular (PopSAN), atan, fast_sigmoid, triangular",
    "pop_size": "neurons per observation dimension and per action dimension",
    "hidden": "hidden layer sizes of actor and critics, comma-separated (e.g. 256,256)",
    "steps": "environment steps to train",
    "learning_starts": "uniform random actions and no updates for this many steps",
    "seed": "run seed: environments, networks, noise and replay sampling",
    "eval_every": "evaluate every this many environment steps (and at the last step)",
    "eval_episodes": "deterministic evaluation episodes per evaluation",
    "out": "run directory; None means runs/<env>_<actor>_T<T>_<replay>_seed<seed>_<time>",
    "checkpoint_every": "write a checkpoint at the first episode end after every this many steps",
    "final_window": "summary.json's eval_return_final_window averages the evaluations of the last this many steps",
    "tensorboard": "also log metrics to DIR/tensorboard when the tensorboard package is installed",
    "batch_size": "transitions per update",
    "update_every": "environment steps between update blocks, each of that many updates",
    "gamma": "discount factor",
    "tau": "target network Polyak coefficient",
    "actor_lr": "actor Adam learning rate",
    "critic_lr": "critic Adam learning rate",
    "exploration_noise": "std of the Gaussian exploration noise, in units of half the action range",
    "target_noise": "std of TD3's target policy smoothing noise",
    "noise_clip": "clip of TD3's target policy smoothing noise",
    "policy_delay": "TD3: critic updates per actor update (SAC updates its actor after every critic update)",
    "replay": "replay strategy: resilient, fifo, unbounded, prioritized",
    "capacity": "capacity in transitions of fifo and prioritized replay",
    "check_interval": "resilient replay: environment steps between discrepancy checks (Δs)",
    "check_batch": "resilient replay: transitions per check (|D'|)",
    "threshold": "resilient replay: shrink when Dis exceeds this",
    "kappa": "resilient replay: fraction κ of the buffer dropped, oldest first, per shrink",
    "min_size": "resilient replay: never shrink below this many transitions",
    "beta": "resilient replay: scale β of state-action points",
    "beta_mode": "resilient replay: constant β, or standardize each dimension by the buffer's std",
    "reduction": "resilient replay: sum or mean of the nearest-neighbour distances",
    "measure": "resilient replay: kdtree (nearest stored point) or direct (stored action) discrepancy",
    "sampler": "resilient replay sampling: uniform or prioritized",
    "per_alpha": "prioritized replay: priority exponent α",
    "per_beta0": "prioritized replay: initial importance-sampling exponent, annealed to 1",
    "max_bytes": "replay memory cap in bytes; past it the oldest transitions are evicted",
    "compact": "store each observation once (next observations rebuilt exactly)",
    "energy_model": "energy model name (`neurorl energy --list-models`) or a .toml file",
    "threads": "torch CPU threads (1 measured fastest for these network sizes)",
    "linear_backend": "where large linear products run on the CPU: onednn (about 2x MKL's AVX2 kernels on AMD "
    "processors), blas (F.linear), or auto (onednn where available)",
    "retain_memory": "keep freed CPU memory in the process (glibc) instead of faulting in fresh pages for "
    "every new tensor: PopSAN forward+backward about 24 -> 16 ms; the process keeps its peak memory",
    "device": "cpu, cuda or auto",
    "compile": "compile td3's losses with torch.compile: about 30 s of warm-up, then updates of a 256-256 ANN "
    "about 5-10%% faster with one thread; no gain for spiking actors",
}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file; command-line values win")
    for name, field in FIELD_TYPES.items():
        default = getattr(TrainConfig(), name)
        flag = option_name(name)
        help_text = f"{HELP.get(name, name)} (default: {default if not isinstance(default, tuple) else ','.join(map(str, default))})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument(
        "--seeds", metavar="S1,S2,...",
        help="train these seeds together in one process on stacked networks (td3 with popsan or ann); "
        "each seed's run goes to OUT/seed=<seed>",
    )
    parser.add_argument(
        "--resume", metavar="DIR",
        help="continue the interrupted run in DIR from its last checkpoint (only --threads, --linear-backend, --retain-memory, --device and --no-progress may be given with it)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurorl", description="Spiking deep RL with resilient replay and energy accounting.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one agent and report return per joule")
    _add_train_options(train)

    sweep = commands.add_parser("sweep", help="train every point of a grid of options from a sweep file")
    sweep.add_argument(
        "sweep_file", metavar="SWEEP.toml", help="sweep file: [base] options, [grid] lists of values and optional [sweep] settings"
    )
    sweep.add_argument("--out", required=True, metavar="DIR", help="sweep directory: one run directory per grid point, and sweep.json")
    sweep.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="number of jobs trained at once; a multi-seed job counts as one (default: 1)",
    )
    sweep.add_argument(
        "--backend", choices=("local", "ray"), default="local",
        help="local: training subprocesses; ray: Ray tasks on a local Ray instance, needs neurorl[ray] (default: local)",
    )
    sweep.add_argument(
        "--batch-seeds", action=argparse.BooleanOptionalAction, default=None,
        help="train the seeds of each seed group (grid points that differ only in seed) in one process on stacked "
        "networks where the multi-seed trainer supports the group's options (td3, mlp critic, popsan with the "
        "deterministic encoder or ann); --no-batch-seeds trains every seed in its own process "
        "(default: batch-seeds in the sweep file's [sweep] table, else on)",
    )

    report = commands.add_parser("report", help="tables and figures from run directories and sweep directories")
    report.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories, or directories searched for them such as sweep directories")
    report.add_argument("--out", required=True, metavar="REPORT_DIR", help="directory for report.csv, report.json and the figures")

    energy = commands.add_parser("energy", help="per-layer operation counts and energy of a run's actor under every model")
    energy.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a finished run directory (holds actor.pt)")
    energy.add_argument("--episodes", type=int, default=5, help="evaluation episodes to count (default: 5)")
    energy.add_argument("--seed", type=int, default=0, help="seed of the first evaluation episode (default: 0)")
    energy.add_argument("--json", action="store_true", help="also write every figure, under every model, to RUN_DIR/energy.json")
    energy.add_argument(
        "--models", default="horowitz45-fp32,horowitz45-int8,memory-inclusive",
        help="comma-separated energy models shown in the table, or 'all' (default: %(default)s)",
    )
    energy.add_argument("--list-models", action="store_true", help="list the energy models and exit")

    commands.add_parser("envs", help="list the Gymnasium environments NeuroRL can train on")
    return parser


def _cli_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in FIELD_TYPES if getattr(args, name) is not None}


def _resolve_train_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    file_values = load_toml(args.config) if args.config else {}
    config = build_config(file_values, _cli_values(args))
    out = Path(config.out or default_run_dir(config, time.strftime("%Y%m%d-%H%M%S")))
    if (out / "summary.json").exists():
        raise ConfigError([f"--out={str(out)!r}: already holds a finished run (summary.json); choose another directory"])
    if out.exists() and not out.is_dir():
        raise ConfigError([f"--out={str(out)!r}: exists and is not a directory"])
    config.out = str(out)
    return config, out


RESUME_OVERRIDES = ("threads", "linear_backend", "retain_memory", "device")


def _resolve_resume_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    out = Path(args.resume)
    problems = []
    given = [option_name(name) for name in _cli_values(args) if name not in RESUME_OVERRIDES]
    if args.config:
        given.append("--config")
    if given:
        problems.append(f"--resume={args.resume!r}: cannot be combined with {', '.join(given)}; the run keeps its own configuration")
    if not out.is_dir():
        problems.append(f"--resume={args.resume!r}: directory not found")
    elif not (out / "config.toml").is_file():
        problems.append(f"--resume={args.resume!r}: no config.toml there; is this a NeuroRL run directory?")
    elif not (out / "checkpoint.pt").is_file():
        problems.append(f"--resume={args.resume!r}: no checkpoint.pt yet; the run stopped before its first checkpoint, start it again")
    if (out / "summary.json").is_file():
        problems.append(
            f"--resume={args.resume!r}: the run already finished (summary.json exists); "
            "its results are in that directory, or start a new run with another --out"
        )
    if problems:
        raise ConfigError(problems)
    overrides = {name: value for name, value in _cli_values(args).items() if name in RESUME_OVERRIDES}
    config = build_config(load_toml(out / "config.toml"), overrides)
    return config, out


def _run_train(args: argparse.Namespace, console: Console) -> int:
    if args.resume:
        config, out = _resolve_resume_config(args)
        from neurorl.experiment.progress import summary_table
        from neurorl.experiment.training import resume

        console.print(f"[bold]NeuroRL[/] resuming {out}")
        summary = resume(config, out, show_progress=not args.no_progress)
        console.print(summary_table(summary, str(out)))
        return 0

    if args.seeds is not None:
        return _run_train_seeds(args, console)

    config, out = _resolve_train_config(args)

    from neurorl.experiment.progress import summary_table
    from neurorl.experiment.training import train

    console.print(f"[bold]NeuroRL[/] training {config.actor} ({config.algo}, T={config.T}) on {config.env} with {config.replay} replay → {out}")
    summary = train(config, out, show_progress=not args.no_progress)
    console.print(summary_table(summary, str(out)))
    return 0


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError([f"--seeds={text!r}: expected comma-separated integers such as 0,1,2"]) from None
    if not seeds:
        raise ConfigError([f"--seeds={text!r}: expected at least one seed"])
    return seeds


def _run_train_seeds(args: argparse.Namespace, console: Console) -> int:
    if args.resume:
        raise ConfigError(["--seeds: cannot be combined with --resume; multi-seed runs have no checkpoints yet"])
    seeds = _parse_seeds(args.seeds)
    config, out = _resolve_train_config(args)
    run_dirs = [out / f"seed={seed}" for seed in seeds]
    finished = [str(path) for path in run_dirs if (path / "summary.json").exists()]
    if finished:
        raise ConfigError([f"--out={str(out)!r}: already holds finished runs ({', '.join(finished)}); choose another directory"])

    from neurorl.experiment.multiseed import check_multiseed_request, train_seeds
    from neurorl.experiment.progress import summary_table

    try:
        check_multiseed_request(config, seeds, run_dirs)
    except ValueError as error:
        raise ConfigError([str(error)]) from None
    console.print(f"[bold]NeuroRL[/] training {config.actor} ({config.algo}, T={config.T}) on {config.env}, seeds {seeds} in one process → {out}")
    summaries = train_seeds(config, seeds, run_dirs, show_progress=not args.no_progress)
    for summary, run_dir in zip(summaries, run_dirs):
        console.print(summary_table(summary, str(run_dir)))
    return 0


def _run_report(args: argparse.Namespace, console: Console) -> int:
    from neurorl.analysis.report import build_report
    from neurorl.analysis.runs import ReportError

    try:
        build_report(args.run_dirs, args.out, console=console)
    except ReportError as error:
        raise UsageError(str(error)) from None
    return 0


def _run_energy(args: argparse.Namespace, console: Console) -> int:
    from neurorl.experiment.energy_report import EnergyReportError, energy_table, measure_actor_energy, model_table, write_energy_json

    if args.list_models:
        console.print(model_table())
        return 0
    if not args.run_dir:
        raise UsageError("RUN_DIR is missing; give a run directory, or --list-models")
    try:
        report = measure_actor_energy(Path(args.run_dir), episodes=args.episodes, seed=args.seed)
    except EnergyReportError as error:
        raise UsageError(str(error)) from None
    known = list(report["energy_per_action_j"])
    models = known if args.models == "all" else [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in known]
    if unknown:
        raise UsageError(f"--models: unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)} or 'all'")
    console.print(energy_table(report, models))
    episodes = report["episodes"]
    console.print(
        f"mean return over {episodes} fresh evaluation episode{'s' if episodes != 1 else ''}: {report['mean_return']:.1f}; "
        f"return per joule (horowitz45-fp32): {report['return_per_joule']['horowitz45-fp32']:,.4g} J⁻¹. "
        "summary.json holds the figures of the run's own last evaluation."
    )
    if args.json:
        console.print(f"wrote {write_energy_json(report, Path(args.run_dir))}")
    return 0


def _run_envs(console: Console) -> int:
    import gymnasium as gym
    from rich.table import Table

    import neurorl.envs  # noqa: F401

    table = Table(title="Registered environments with continuous actions")
    table.add_column("id")
    table.add_column("entry point")
    classic = {"Pendulum-v1", "MountainCarContinuous-v0"}
    for env_id, spec in sorted(gym.envs.registry.items()):
        # Retired ids (MuJoCo v2/v3) register a function that only raises, not an import path.
        if not isinstance(spec.entry_point, str):
            continue
        if env_id.startswith("neurorl/") or "mujoco" in spec.entry_point or env_id in classic:
            table.add_row(env_id, spec.entry_point)
    console.print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    console = Console()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _run_train(args, console)
        if args.command == "sweep":
            from neurorl.experiment.sweep import run_sweep

            return run_sweep(
                args.sweep_file, args.out, workers=args.workers, backend=args.backend, console=console,
                batch_seeds=args.batch_seeds,
            ).exit_code
        if args.command == "report":
            return _run_report(args, console)
        if args.command == "energy":
            return _run_energy(args, console)
        if args.command == "envs":
            return _run_envs(console)
    except (ConfigError, UsageError) as error:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]neurorl {args.command}:[/] {escape(str(error))}", highlight=False)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
