"""``neurorl energy RUN_DIR``: per-layer operation counts and energy of a trained actor.

The run's final actor (actor.pt) is rebuilt, driven through fresh evaluation episodes on the
run's environment, and every layer's ACs, MACs, input firing rate and energy are reported under
every energy model, so figures can be compared across hardware assumptions without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.table import Table

import neurorl.envs  # noqa: F401  (registers the neurorl/ navigation tasks)
from neurorl.agents.normalization import RunningNormalizer
from neurorl.energy import EnergyModel, OperationCounter, OperationCounts, get_energy_model, list_energy_models
from neurorl.experiment.rundir import write_json_atomic
from neurorl.snn.actors import ActorSpec, build_actor


def all_energy_models() -> dict[str, EnergyModel]:
    """Return every preset energy model by name, the default first."""
    return {entry["name"]: get_energy_model(entry["name"]) for entry in list_energy_models()}


class EnergyReportError(ValueError):
    """The run directory cannot be reported on."""


def load_actor(run_dir: Path) -> tuple[torch.nn.Module, RunningNormalizer, dict[str, Any]]:
    """Rebuild the final actor of ``run_dir`` and its observation normalisation."""
    path = run_dir / "actor.pt"
    if not path.is_file():
        raise EnergyReportError(f"{path}: not found; `neurorl energy` needs a finished run directory")
    saved = torch.load(path, weights_only=True, map_location="cpu")
    spec = dict(saved["spec"])
    spec["hidden"] = tuple(spec["hidden"])
    actor = build_actor(saved["actor"], ActorSpec(**spec))
    actor.load_state_dict(saved["state_dict"])
    actor.eval()

    normalizer = RunningNormalizer(spec["obs_dim"])
    normalizer.load_state_dict({"mean": saved["normalizer_mean"].numpy(), "var": saved["normalizer_var"].numpy(),
                                "count": saved["normalizer_count"]})
    return actor, normalizer, saved


def measure_actor_energy(run_dir: Path, episodes: int = 5, seed: int = 0, env_id: str | None = None) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes and return per-layer counts and energy per model."""
    if episodes < 1:
        raise EnergyReportError(f"--episodes={episodes}: must be at least 1")
    actor, normalizer, saved = load_actor(run_dir)
    env = gym.make(env_id or saved["env"])
    scale, bias = saved["action_scale"].numpy(), saved["action_bias"].numpy()

    counter = OperationCounter(actor)
    actions, returns = 0, []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.inference_mode(), counter.phase("acting"):
                tensor = normalizer.normalize(torch.as_tensor(np.asarray(obs, dtype=np.float32))[None])
                action = actor(tensor)[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action * scale + bias)
            total += float(reward)
            actions += 1
            done = terminated or truncated
        returns.append(total)

    layers = [_layer_entry(layer, actions) for layer in counter.layer_counts("acting")]
    totals = counter.take("acting")
    counter.remove()
    return {
        "run_dir": str(run_dir),
        "actor": saved["actor"],
        "T": int(saved["spec"]["T"]),
        "episodes": episodes,
        "actions": actions,
        "mean_return": float(np.mean(returns)),
        "layers": layers,
        "per_action": _per_action(totals, actions),
        "energy_per_action_j": {name: model.energy_j(totals) / actions for name, model in all_energy_models().items()},
        "return_per_joule": {
            name: float(np.mean(returns)) / (model.energy_j(totals) / episodes) for name, model in all_energy_models().items()
        },
        "energy_models": {name: model.as_dict() for name, model in all_energy_models().items()},
    }


def _layer_entry(layer: dict[str, Any], actions: int) -> dict[str, Any]:
    slots = layer["spike_input_slots"]
    counts = OperationCounts(
        ac=layer["ac"], mac=layer["mac"], effective_mac=layer["effective_mac"],
        neuron_updates={layer["neuron_model"]: layer["neuron_updates"]} if layer["neuron_updates"] else {},
    )
    return {
        "name": layer["name"],
        "kind": layer["kind"],
        "input_firing_rate": layer["spike_inputs"] / slots if slots else None,
        "ac_per_action": layer["ac"] / actions,
        "mac_per_action": layer["mac"] / actions,
        "neuron_updates_per_action": layer["neuron_updates"] / actions,
        "energy_per_action_j": {name: model.energy_j(counts) / actions for name, model in all_energy_models().items()},
    }


def _per_action(totals: OperationCounts, actions: int) -> dict[str, float]:
    return {
        "ac": totals.ac / actions,
        "mac": totals.mac / actions,
        "effective_mac": totals.effective_mac / actions,
        "neuron_updates": sum(totals.neuron_updates.values()) / actions,
    }


DEFAULT_TABLE_MODELS = ("horowitz45-fp32", "horowitz45-int8", "memory-inclusive")


def short_model_label(name: str) -> str:
    """Return a column label short enough for an 80-column terminal (``horowitz45-fp32`` → ``fp32``)."""
    return name.replace("horowitz45-", "").replace("memory-inclusive", "mem")


def energy_table(report: dict[str, Any], models: list[str]) -> Table:
    """Build the per-layer rich table with one energy column per model, in nJ per action."""
    table = Table(title=f"Actor energy per action · {report['actor']} T={report['T']} · {report['actions']:,} actions over {report['episodes']} episode{'s' if report['episodes'] != 1 else ''}; rate = input firing rate")
    table.add_column("layer", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("rate", justify="right", no_wrap=True)
    table.add_column("ACs", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    for name in models:
        table.add_column(f"{short_model_label(name)} nJ", justify="right", no_wrap=True)
    for layer in report["layers"]:
        rate = layer["input_firing_rate"]
        table.add_row(
            layer["name"], layer["kind"], "–" if rate is None else f"{rate:.3f}",
            f"{layer['ac_per_action']:,.0f}", f"{layer['mac_per_action']:,.0f}",
            *[f"{layer['energy_per_action_j'][name] * 1e9:,.3f}" for name in models],
        )
    per_action = report["per_action"]
    table.add_row(
        "[bold]total", "", "", f"[bold]{per_action['ac']:,.0f}", f"[bold]{per_action['mac']:,.0f}",
        *[f"[bold]{report['energy_per_action_j'][name] * 1e9:,.3f}" for name in models],
    )
    return table


def write_energy_json(report: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "energy.json"
    write_json_atomic(path, report)
    return path


def model_table(models: list[EnergyModel] | None = None) -> Table:
    """Build the table printed by ``neurorl energy --list-models``."""
    table = Table(title="Energy models (pJ per operation)")
    table.add_column("name", no_wrap=True)
    for column in ("AC", "MAC", "weight read", "membrane r+w"):
        table.add_column(column, justify="right")
    table.add_column("description", ratio=1)
    for model in models or list(all_energy_models().values()):
        table.add_row(
            model.name, f"{model.ac_pj:g}", f"{model.mac_pj:g}", f"{model.weight_read_pj:g}",
            f"{model.membrane_read_pj + model.membrane_write_pj:g}", model.description,
        )
    return table
