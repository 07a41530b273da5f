"""Operation counts of forward passes: the record the counter returns and the ledger books."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass
class OperationCounts:
    """Operation counts accumulated over one or more forward passes.

    :param ac: accumulate operations of spike-fed layers (non-zero spike inputs × fan-out).
    :param mac: multiply-accumulates of dense-input layers and encoders, zeros included.
    :param effective_mac: MACs of dense-input layers that skip zero inputs and zero weights, plus
        encoder MACs. In phases where the counter does not count zeros (``learning`` by
        default) dense layers book their full ``mac`` here.
    :param neuron_updates: neuron state updates per neuron model (class name).
    :param samples: rows (batch elements) seen by the forward of the counted root modules.
    :param forward_passes: calls of the root modules' forward.
    :param ac_connections: connections of spike-fed layers (rows × in × out, zeros included),
        which is the ``ac`` they would cost if every input spiked. The backward estimate uses it.
    :param spike_inputs: non-zero input elements into spike-fed layers.
    :param spike_input_slots: all input elements into spike-fed layers.
    """

    ac: int = 0
    mac: int = 0
    effective_mac: int = 0
    neuron_updates: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    forward_passes: int = 0
    ac_connections: int = 0
    spike_inputs: int = 0
    spike_input_slots: int = 0

    def __add__(self, other: OperationCounts) -> OperationCounts:
        if not isinstance(other, OperationCounts):
            return NotImplemented
        updates = dict(self.neuron_updates)
        for kind, value in other.neuron_updates.items():
            updates[kind] = updates.get(kind, 0) + value
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "neuron_updates"
        }
        return OperationCounts(neuron_updates=updates, **summed)

    @property
    def total_neuron_updates(self) -> int:
        """Neuron state updates of all neuron models together."""
        return sum(self.neuron_updates.values())

    @property
    def input_firing_rate(self) -> float:
        """Fraction of spike-layer input elements that carried a spike (nan when there were none)."""
        if self.spike_input_slots == 0:
            return math.nan
        return self.spike_inputs / self.spike_input_slots

    def as_dict(self) -> dict[str, Any]:
        """Return the counts as plain Python types (a copy)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["neuron_updates"] = dict(self.neuron_updates)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OperationCounts:
        """Build counts from :meth:`as_dict` output. Missing optional fields default to zero."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown operation count fields {unknown}, expected a subset of {sorted(known)}")
        copied = dict(values)
        copied["neuron_updates"] = {str(k): int(v) for k, v in dict(values.get("neuron_updates", {})).items()}
        for name in known - {"neuron_updates"}:
            if name in copied:
                copied[name] = int(copied[name])
        return cls(**copied)
