"""Energy of a run by phase (acting, learning, replay), with counted and estimated parts apart.

``acting`` contains the actor passes that choose actions and evaluate. ``learning`` contains the
forward passes of updates (counted) and their backward passes (estimated). ``replay`` contains
the resilient check's actor pass (counted) and its KD-tree (estimated from a cost model). Every
estimate is booked under a label, so a report always shows which joules were counted and which
were modelled.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from neurorl.energy.counting import PHASES
from neurorl.energy.counts import OperationCounts
from neurorl.energy.kdtree import SCIPY_LEAFSIZE, kdtree_operation_counts
from neurorl.energy.models import EnergyModel

BACKWARD_FACTOR = 2.0
BACKWARD_LABEL = "backward (2x forward dense ops)"
KDTREE_LABEL = "kdtree (cost model)"
STATE_VERSION = 1


def backward_estimate(counts: OperationCounts, factor: float = BACKWARD_FACTOR) -> OperationCounts:
    """Estimate the operations of the backward pass of the forward passes in ``counts``.

    Rule: a backward pass through a synaptic layer computes the gradient with respect to its input
    (grad_out · W) and with respect to its weights (grad_outᵀ · x). Each is a product as large as
    the dense forward product, so the layer costs ``factor`` (2) × its connections as MACs. The
    backward-to-forward FLOP ratio is close to 2:1 for deep networks at large batch (Epoch AI,
    "What's the backward-forward FLOP ratio for neural networks?", 2021). The first layer needs
    no input gradient, so the rule overestimates it. Spike-fed layers are charged their dense
    connections (``ac_connections``), not their ACs, because surrogate-gradient training
    multiplies dense gradient matrices whatever the spikes were. Each neuron update is charged
    ``factor`` updates for backpropagation through time (the surrogate gradient and the
    membrane recurrence). Optimizer arithmetic is not included.
    """
    if not math.isfinite(factor) or factor < 0:
        raise ValueError(f"backward factor must be a finite number >= 0, got {factor!r}")
    dense = counts.mac + counts.ac_connections
    return OperationCounts(
        ac=0,
        mac=round(factor * dense),
        effective_mac=round(factor * dense),
        neuron_updates={kind: round(factor * value) for kind, value in counts.neuron_updates.items()},
        samples=counts.samples,
        forward_passes=counts.forward_passes,
    )


def kdtree_counts_as_operations(kdtree: Mapping[str, Any]) -> OperationCounts:
    """Map KD-tree operation counts to AC and MAC terms: adds and comparisons as ACs, MACs as MACs.

    An AC is one add, so a subtraction or a comparison costs as much as an AC under every
    energy model. A squared-difference accumulation is one MAC.
    """
    adds = round(kdtree["adds"] + kdtree["comparisons"])
    macs = round(kdtree["macs"])
    return OperationCounts(ac=adds, mac=macs, effective_mac=macs)


def return_per_joule(episode_return: float, episode_energy_j: float) -> float:
    """Return ``episode_return / episode_energy_j``, the return earned per joule of actor energy.

    Returns nan when the energy is exactly 0, because an episode without counted actor passes has
    no defined return per joule. Report it as missing, not as infinite.

    :raises ValueError: when the energy is negative or not finite, or the return is not finite.
    """
    if not math.isfinite(episode_return):
        raise ValueError(f"episode return must be finite, got {episode_return!r}")
    if not math.isfinite(episode_energy_j) or episode_energy_j < 0:
        raise ValueError(f"episode energy must be a finite number of joules >= 0, got {episode_energy_j!r}")
    if episode_energy_j == 0:
        return math.nan
    return episode_return / episode_energy_j


class EnergyLedger:
    """Accumulate operation counts by phase and turn them into joules with one energy model.

    :param model: the energy model every figure of this ledger uses. Reports name it.

    Example::

        ledger = EnergyLedger(get_energy_model("horowitz45-fp32"))
        ledger.book("acting", counter.take("acting"))
        learning = counter.take("learning")
        ledger.book("learning", learning)
        ledger.book_backward_estimate(learning)
        ledger.energy_j()   # {"acting": ..., "learning": ..., "replay": ..., "total": ...}
    """

    def __init__(self, model: EnergyModel) -> None:
        if not isinstance(model, EnergyModel):
            raise TypeError(f"model must be an EnergyModel (see get_energy_model), got {type(model).__name__}")
        self.model = model
        self._counted: dict[str, OperationCounts] = {phase: OperationCounts() for phase in PHASES}
        self._estimates: dict[str, dict[str, OperationCounts]] = {phase: {} for phase in PHASES}
        self._kdtree_checks = 0
        self._kdtree_totals: dict[str, float] = {}

    # ----------------------------------------------------------------------------- booking

    def book(self, phase: str, counts: OperationCounts, *, estimate: str | None = None) -> None:
        """Add ``counts`` to ``phase``: as counted operations, or as an estimate labelled ``estimate``."""
        _check_phase(phase)
        if not isinstance(counts, OperationCounts):
            raise TypeError(f"counts must be OperationCounts, got {type(counts).__name__}")
        if estimate is None:
            self._counted[phase] = self._counted[phase] + counts
            return
        if not isinstance(estimate, str) or not estimate.strip():
            raise ValueError(f"an estimate needs a non-empty label, got {estimate!r}")
        booked = self._estimates[phase].get(estimate, OperationCounts())
        self._estimates[phase][estimate] = booked + counts

    def book_backward_estimate(self, counts: OperationCounts, *, factor: float = BACKWARD_FACTOR) -> OperationCounts:
        """Book the estimated backward passes of the learning forward passes ``counts``.

        Uses :func:`backward_estimate` and books it to ``learning`` under the label
        ``"backward (2x forward dense ops)"`` (or ``"backward (<factor>x ...)"``). Returns the
        booked counts.
        """
        estimated = backward_estimate(counts, factor)
        label = BACKWARD_LABEL if factor == BACKWARD_FACTOR else f"backward ({factor:g}x forward dense ops)"
        self.book("learning", estimated, estimate=label)
        return estimated

    def book_kdtree(self, n_points: int, dim: int, n_queries: int, *, leafsize: int = SCIPY_LEAFSIZE) -> dict[str, Any]:
        """Book one KD-tree build on ``n_points`` and ``n_queries`` queries to ``replay``.

        Counts come from :func:`kdtree_operation_counts` and are booked under the label
        ``"kdtree (cost model)"``. Returns the KD-tree counts.
        """
        kdtree = kdtree_operation_counts(n_points, dim, n_queries, leafsize=leafsize)
        self.book("replay", kdtree_counts_as_operations(kdtree), estimate=KDTREE_LABEL)
        self._kdtree_checks += 1
        for key in ("build_comparisons", "query_distance_evaluations", "query_node_visits", "brute_force_upper_bound"):
            self._kdtree_totals[key] = self._kdtree_totals.get(key, 0) + kdtree[key]
        return kdtree

    # ----------------------------------------------------------------------------- reading

    def counts(self) -> dict[str, OperationCounts]:
        """Return the counted (not estimated) operations of each phase."""
        return {phase: OperationCounts() + counts for phase, counts in self._counted.items()}

    def estimates(self) -> dict[str, dict[str, OperationCounts]]:
        """Return the estimated operations of each phase, by label."""
        return {phase: {label: OperationCounts() + c for label, c in labels.items()} for phase, labels in self._estimates.items()}

    def energy_j(self) -> dict[str, float]:
        """Return joules per phase, counted and estimated parts together, and their ``total``."""
        energies = {phase: self._phase_energy(phase) for phase in PHASES}
        energies["total"] = sum(energies.values())
        return energies

    def summary(self) -> dict[str, Any]:
        """Return a report: the model, and per phase the counted and estimated joules and counts."""
        phases = {}
        for phase in PHASES:
            counted = self._counted[phase]
            phases[phase] = {
                "counted_j": self.model.energy_j(counted),
                "counted_breakdown_j": self.model.breakdown_j(counted),
                "counted_ops": counted.as_dict(),
                "estimated_j": {label: self.model.energy_j(c) for label, c in self._estimates[phase].items()},
                "estimated_ops": {label: c.as_dict() for label, c in self._estimates[phase].items()},
                "total_j": self._phase_energy(phase),
            }
        return {
            "energy_model": self.model.name,
            "energy_model_params": self.model.as_dict(),
            "phases": phases,
            "total_j": sum(p["total_j"] for p in phases.values()),
            "kdtree_checks": self._kdtree_checks,
            "kdtree_totals": dict(self._kdtree_totals),
        }

    def format_summary(self) -> str:
        """Return :meth:`summary` as short human-readable lines that name the model."""
        report = self.summary()
        lines = [f"energy model: {self.model.name} ({self.model.description})"]
        for phase, entry in report["phases"].items():
            lines.append(f"{phase:>8}: {entry['total_j']:.6g} J (counted {entry['counted_j']:.6g} J)")
            for label, joules in entry["estimated_j"].items():
                lines.append(f"{'':>10}estimate {label}: {joules:.6g} J")
        lines.append(f"{'total':>8}: {report['total_j']:.6g} J")
        return "\n".join(lines)

    # ----------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Return the ledger's state as plain Python types (for checkpoints)."""
        return {
            "version": STATE_VERSION,
            "model": self.model.as_dict(),
            "counted": {phase: counts.as_dict() for phase, counts in self._counted.items()},
            "estimates": {phase: {label: c.as_dict() for label, c in labels.items()} for phase, labels in self._estimates.items()},
            "kdtree_checks": self._kdtree_checks,
            "kdtree_totals": dict(self._kdtree_totals),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore totals saved by :meth:`state_dict`. Nothing changes when the state is invalid.

        :raises ValueError: when the state is malformed or was written with another energy model
            or state version.
        """
        missing = [key for key in ("version", "model", "counted", "estimates") if key not in state]
        if missing:
            raise ValueError(f"ledger state is missing {missing}. Pass the output of EnergyLedger.state_dict()")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"ledger state version {state['version']!r} is not supported, expected {STATE_VERSION}")
        saved_model = dict(state["model"])
        if saved_model != self.model.as_dict():
            raise ValueError(
                f"ledger state was written with energy model {saved_model.get('name')!r} ({saved_model}), "
                f"but this ledger uses {self.model.name!r} ({self.model.as_dict()}). "
                "Resume with the same model or start a new ledger"
            )
        unknown = sorted((set(state["counted"]) | set(state["estimates"])) - set(PHASES))
        if unknown:
            raise ValueError(f"ledger state has unknown phases {unknown}, expected {list(PHASES)}")

        counted = {phase: OperationCounts.from_dict(state["counted"].get(phase, {})) for phase in PHASES}
        estimates = {
            phase: {label: OperationCounts.from_dict(c) for label, c in state["estimates"].get(phase, {}).items()}
            for phase in PHASES
        }
        self._counted, self._estimates = counted, estimates
        self._kdtree_checks = int(state.get("kdtree_checks", 0))
        self._kdtree_totals = dict(state.get("kdtree_totals", {}))

    def _phase_energy(self, phase: str) -> float:
        joules = self.model.energy_j(self._counted[phase])
        return joules + sum(self.model.energy_j(c) for c in self._estimates[phase].values())


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}, expected one of {', '.join(PHASES)}")


__all__ = [
    "BACKWARD_FACTOR",
    "EnergyLedger",
    "backward_estimate",
    "kdtree_counts_as_operations",
    "return_per_joule",
]
