"""Per-layer AC, MAC and neuron-update counts of every forward pass, from forward hooks.

Counting rules, per forward pass:

* A synaptic layer fed by spikes (``input_kind = "spike"``, values in {0, 1}) costs one AC per
  non-zero input element times that input's fan-out, the number of non-zero weights it drives:
  ``ac = (x != 0).sum(rows) · (W != 0).sum(outputs)``.
* A synaptic layer fed by real values (``input_kind = "dense"``) costs ``mac = rows · in · out``
  MACs, zeros included, as on hardware without zero skipping. ``effective_mac`` skips zero inputs
  and zero weights (non-zero inputs times fan-out), which is NeuroBench's ``SynapticOperations``
  count (Yik et al., Nature Communications 2025).
* A layer without ``input_kind`` is classified at every call the way NeuroBench does it: an
  input whose values all lie in {0, 1, −1} counts as spikes, any other input as dense.
* A population encoder (``input_kind = "encoder"``, with ``obs_dim`` and ``pop_size``) costs
  ``obs_dim · pop_size`` MACs per sample per forward pass for its receptive-field currents.
* Every neuron population (snnTorch ``SpikingNeuron``, or a module with a string
  ``neuron_model``) costs one state update per element of its output per call, booked under its
  neuron model (the class name by default). An encoder that generates spikes without calling a
  hooked neuron (Bernoulli sampling) books one update per output element under its own name.
* Biases are never counted.

Hooks count only inside ``OperationCounter.phase(...)``. Outside it each hook returns at once.
Data-dependent counts stay on the input's device and are read once per ``take``, so counting on a
GPU adds no host synchronisation per call (except for layers without ``input_kind``).

NOTE: the device-side accumulation is written for CUDA tensors, but the tests and benchmarks have
only run on CPU.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Collection, Iterator, Sequence

import torch
from torch import nn

from neurorl.energy.counts import OperationCounts
from neurorl.energy.discovery import INPUT_KINDS, plan_module, validate_roots
from neurorl.energy.synapses import (
    SynapseCall,
    column_sums,
    conv_call,
    detect_kind,
    elementwise_call,
    layer_fanout,
    linear_call,
    nan_probe,
    pending_values,
    shape_call,
)

PHASES = ("acting", "learning", "replay")
SPIKE_CHECK_CALLS = 16
EFFECTIVE_MAC_PHASES = ("acting", "replay")

__all__ = ["INPUT_KINDS", "PHASES", "OperationCounter", "OperationCounts", "count_operations"]


@dataclass
class _Tally:
    """Counts of one hooked module in one phase. Tensors stay on the input's device."""

    calls: int = 0
    rows: int = 0
    mac: int = 0
    ac_connections: int = 0
    spike_slots: int = 0
    dense_slots: int = 0
    neuron_updates: int = 0
    # MACs of dense calls in phases without zero counting, booked as effective MACs too.
    unmeasured_mac: int = 0
    out_units: int | None = None
    spike_kind: str = "spike"
    # Linear and Conv inputs: float64 non-zero counts per input feature (and position), summed
    # over calls since the last flush and not yet multiplied by the fan-out.
    pending: dict[str, torch.Tensor] = field(default_factory=dict)
    # float64 [ops, non-zero inputs] per input kind ("spike" or "dense").
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    # Spike check: the summed binary gap and the running max of [−min, max]. Encoders sum
    # their inputs into ``probe``, which is finite only for finite inputs.
    gap: torch.Tensor | None = None
    extremes: torch.Tensor | None = None
    probe: torch.Tensor | None = None

    def add_pending(self, kind: str, per_input: torch.Tensor) -> None:
        previous = self.pending.get(kind)
        if previous is None:
            self.pending[kind] = per_input.to(torch.float64)
        else:
            self.pending[kind] = _same_device(previous, per_input) + per_input

    def add_sums(self, kind: str, ops: torch.Tensor, nonzero: torch.Tensor) -> None:
        values = torch.stack((ops.to(torch.float64), nonzero.to(torch.float64)))
        previous = self.sums.get(kind)
        self.sums[kind] = values if previous is None else _same_device(previous, values) + values

    def add_check(self, gap: torch.Tensor | None, extremes: torch.Tensor | None) -> None:
        if gap is None or extremes is None:
            return
        self.gap = gap if self.gap is None else _same_device(self.gap, gap) + gap
        self.extremes = extremes if self.extremes is None else torch.maximum(_same_device(self.extremes, extremes), extremes)

    def add_probe(self, probe: torch.Tensor | None) -> None:
        if probe is not None:
            self.probe = probe if self.probe is None else _same_device(self.probe, probe) + probe

    def register_reads(self, reader: _Reader, hooked: _Hooked) -> _ReadHandle:
        """Queue this tally's device counters on ``reader`` without changing the tally."""
        handle = _ReadHandle()
        for key, tensor in self.sums.items():
            handle.places[key] = reader.add(tensor)
        for key in ("gap", "extremes", "probe"):
            tensor = getattr(self, key)
            if tensor is not None:
                handle.places[key] = reader.add(tensor)
        for kind, pending in self.pending.items():
            if isinstance(hooked.fanout, float):
                handle.pending[kind] = (reader.add(pending.sum()), hooked.fanout)
            else:
                handle.pending[kind] = (reader.add(pending_values(hooked.module, pending, hooked.fanout)), None)
        return handle

    def flush(self, hooked: _Hooked, kind: str | None = None) -> None:
        """Multiply pending counts (of ``kind``, or all) by the module's fan-out into the sums."""
        for pending_kind in [kind] if kind is not None else list(self.pending):
            pending = self.pending.pop(pending_kind, None)
            if pending is None:
                continue
            if isinstance(hooked.fanout, float):
                nonzero = pending.sum()
                self.add_sums(pending_kind, nonzero * hooked.fanout, nonzero)
            else:
                ops, nonzero = pending_values(hooked.module, pending, hooked.fanout)
                self.add_sums(pending_kind, ops, nonzero)


class _Reader:
    """Collect device tensors from many tallies and copy them to the host in one transfer per device."""

    def __init__(self) -> None:
        self._tensors: list[torch.Tensor] = []
        self._values: list[float] = []
        self._size = 0

    def add(self, tensor: torch.Tensor) -> slice:
        flat = tensor.detach().reshape(-1).to(torch.float64)
        self._tensors.append(flat)
        self._size += flat.numel()
        return slice(self._size - flat.numel(), self._size)

    def read(self) -> None:
        if not self._tensors:
            return
        device = self._tensors[0].device
        if all(t.device == device for t in self._tensors):
            self._values = torch.cat(self._tensors).tolist()
        else:
            self._values = [value for t in self._tensors for value in t.tolist()]

    def get(self, place: slice) -> list[float]:
        return self._values[place]


@dataclass
class _ReadHandle:
    """Positions of one tally's tensors in a :class:`_Reader`, and how to combine them."""

    places: dict[str, slice] = field(default_factory=dict)
    # Pending Linear counts read as [non-zero] (scalar fan-out) or [ops, non-zero].
    pending: dict[str, tuple[slice, float | None]] = field(default_factory=dict)

    def values(self, reader: _Reader) -> dict[str, list[float]]:
        values = {key: reader.get(place) for key, place in self.places.items()}
        for kind, (place, scalar_fanout) in self.pending.items():
            read = reader.get(place)
            ops, nonzero = (read[0] * scalar_fanout, read[0]) if scalar_fanout is not None else (read[0], read[1])
            base = values.get(kind, [0.0, 0.0])
            values[kind] = [base[0] + ops, base[1] + nonzero]
        return values


def _same_device(accumulated: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    # Accumulators are replaced, never updated in place, because one created under
    # torch.inference_mode cannot be updated in place outside it.
    return accumulated if accumulated.device == new.device else accumulated.to(new.device)


class _Hooked:
    """One module the counter watches: name, role, declared input kind and per-phase tallies."""

    def __init__(self, name: str, module: nn.Module, role: str, kind: str | None, spike_checks: int | None) -> None:
        self.name = name
        self.module = module
        self.role = role
        self.kind = kind
        self.tallies: dict[str, _Tally] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.neuron_calls_before = 0
        self.spike_checks_left = spike_checks
        self.neuron_model = getattr(module, "neuron_model", None) or type(module).__name__
        # Linear and Conv layers: fan-out of the weight version the pending counts were taken with.
        self.fanout: torch.Tensor | float = 0.0
        self.weight: torch.Tensor | None = None
        self.weight_key: tuple[int, int] | None = None

    def tally(self, phase: str) -> _Tally:
        record = self.tallies.get(phase)
        if record is None:
            record = self.tallies[phase] = _Tally()
        return record

    def take_spike_check(self) -> bool:
        if self.spike_checks_left is None:
            return True
        if self.spike_checks_left <= 0:
            return False
        self.spike_checks_left -= 1
        return True

    def flush(self) -> None:
        for record in self.tallies.values():
            if record.pending:
                record.flush(self)


class OperationCounter:
    """Count ACs, MACs and neuron updates of every forward pass through the given modules.

    Hooks are registered once, on every synaptic layer (``nn.Linear``, ``nn.Conv1d/2d/3d``,
    snnTorch's ``RecurrentOneToOne``), neuron population and population encoder inside
    ``modules``, and on the root modules themselves to count samples. They count only inside
    :meth:`phase`; outside it each hook returns at once. Counting runs under ``torch.no_grad`` on
    detached inputs and keeps no activations: per layer and phase it keeps a few counters and,
    for Linear layers, one vector of input-feature counts.

    :param modules: root modules, for example the actor and the critics. None may contain another.
    :param spike_check_calls: how many calls of each layer declared ``input_kind = "spike"`` are
        verified to carry only values in {0, 1} ({−1, 0, 1} with ``signed_spikes = True``); a
        violation raises at :meth:`take`. ``None`` verifies every call, 0 none. A layer's input
        kind is fixed by the architecture, so the first calls catch a wrong declaration; NaN
        inputs of spike-fed layers are detected at every call regardless.
    :param effective_mac_phases: phases in which dense-fed layers count their zero inputs
        (``effective_mac``) and detect NaN inputs. That costs several passes over every dense
        input, about a tenth of a 256-wide layer's forward on CPU. So by default the
        ``learning`` phase skips it. There, dense layers cost nothing per call beyond shape
        arithmetic, and their ``effective_mac`` is booked equal to ``mac`` (no zero skipping
        assumed).

    Example::

        counter = OperationCounter(actor)
        with counter.phase("acting"):
            actor(obs)
        counts = counter.take("acting")
    """

    def __init__(
        self,
        *modules: nn.Module,
        spike_check_calls: int | None = SPIKE_CHECK_CALLS,
        effective_mac_phases: Collection[str] = EFFECTIVE_MAC_PHASES,
    ) -> None:
        validate_roots(modules)
        problems = []
        if spike_check_calls is not None and (isinstance(spike_check_calls, bool) or spike_check_calls < 0):
            problems.append(f"spike_check_calls must be None or an integer >= 0, got {spike_check_calls!r}")
        if isinstance(effective_mac_phases, str) or any(p not in PHASES for p in effective_mac_phases):
            problems.append(f"effective_mac_phases must be a collection of {PHASES}, got {effective_mac_phases!r}")
        if problems:
            raise ValueError("invalid OperationCounter options:\n  " + "\n  ".join(problems))
        self.spike_check_calls = spike_check_calls
        self.effective_mac_phases = frozenset(effective_mac_phases)
        self._phases: list[str] = []
        self._neuron_calls = 0
        self._roots: list[_Hooked] = []
        self._hooked: list[_Hooked] = []
        self._connections: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
        self._removed = False
        self._register(modules)

    # ----------------------------------------------------------------------------- public API

    @property
    def active_phase(self) -> str | None:
        """Phase whose operations are being counted, or None outside every phase."""
        return self._phases[-1] if self._phases else None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[OperationCounter]:
        """Count forward passes inside the ``with`` block as phase ``name``.

        Phases nest: an inner phase counts until it exits, then the outer one resumes.
        """
        _check_phase(name)
        if self._removed:
            raise RuntimeError("this OperationCounter's hooks were removed. Create a new counter to count again")
        self._phases.append(name)
        try:
            yield self
        finally:
            self._phases.pop()

    def take(self, phase: str) -> OperationCounts:
        """Return the counts accumulated in ``phase`` since the last take, and reset them.

        :raises ValueError: when a layer received NaN inputs, or a layer declared
            ``input_kind = "spike"`` received non-spike values, during the phase. The phase is
            reset before raising.
        """
        items = self._read(phase)
        self._reset(phase)
        _raise_on_invalid(items, phase)
        return _sum_items(items)

    def peek(self, phase: str) -> OperationCounts:
        """Return the counts accumulated in ``phase`` without resetting them."""
        items = self._read(phase)
        _raise_on_invalid(items, phase)
        return _sum_items(items)

    def layer_counts(self, phase: str) -> list[dict[str, Any]]:
        """Return per-module totals of ``phase`` (not reset) for every module called in it.

        Each dict has ``name``, ``kind`` ("spike", "dense", "mixed", "encoder" or "neuron"),
        ``role``, ``neuron_model``, ``calls``, ``rows``, ``ac``, ``mac``, ``effective_mac``,
        ``ac_connections``, ``neuron_updates``, ``nonzero_inputs``, ``spike_inputs``,
        ``spike_input_slots``, ``input_elements`` and ``out_units``.
        """
        items = self._read(phase)
        _raise_on_invalid(items, phase)
        return [_report(*item) for item in items if item[0].role != "root"]

    def reset(self) -> None:
        """Discard the counts of every phase."""
        for phase in PHASES:
            self._reset(phase)

    def remove(self) -> None:
        """Remove every hook this counter registered. The counter cannot count again afterwards."""
        for hooked in self._roots + self._hooked:
            for handle in hooked.handles:
                handle.remove()
            hooked.handles.clear()
            hooked.weight = None
        self._removed = True

    # ----------------------------------------------------------------------------- registration

    def _register(self, roots: Sequence[nn.Module]) -> None:
        problems: list[str] = []
        seen: set[int] = set()
        plan = []
        for index, root in enumerate(roots):
            prefix = "" if len(roots) == 1 else f"{index}:"
            planned, root_problems = plan_module(root, prefix, seen)
            plan.extend(planned)
            problems.extend(root_problems)
        if problems:
            raise ValueError("cannot count operations of these modules:\n  " + "\n  ".join(problems))

        for index, root in enumerate(roots):
            hooked = _Hooked(f"{index}:{type(root).__name__}", root, "root", None, None)
            hooked.handles.append(root.register_forward_hook(self._make_root_hook(hooked), with_kwargs=True))
            self._roots.append(hooked)

        for name, module, role, kind in plan:
            hooked = _Hooked(name, module, role, kind, self.spike_check_calls)
            if role == "synapse":
                hook = self._make_synapse_hook(hooked)
                hooked.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            elif role == "neuron":
                hooked.handles.append(module.register_forward_hook(self._make_neuron_hook(hooked)))
            else:
                hooked.handles.append(module.register_forward_pre_hook(self._make_encoder_pre_hook(hooked)))
                hooked.handles.append(module.register_forward_hook(self._make_encoder_hook(hooked), with_kwargs=True))
            self._hooked.append(hooked)

    # ----------------------------------------------------------------------------- hooks

    def _make_root_hook(self, hooked: _Hooked):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not self._phases:
                return
            record = hooked.tally(self._phases[-1])
            record.calls += 1
            record.rows += _leading_rows(args, kwargs)

        return hook

    def _make_neuron_hook(self, hooked: _Hooked):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._neuron_calls += 1
            if not self._phases:
                return
            spikes = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            record = hooked.tally(self._phases[-1])
            record.calls += 1
            record.neuron_updates += spikes.numel() if spikes is not None else 0

        return hook

    def _make_encoder_pre_hook(self, hooked: _Hooked):
        def hook(module: nn.Module, args: tuple) -> None:
            hooked.neuron_calls_before = self._neuron_calls

        return hook

    def _make_encoder_hook(self, hooked: _Hooked):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not self._phases:
                return
            with torch.no_grad():
                self._count_encoder(hooked, module, args, kwargs, output)

        return hook

    def _make_synapse_hook(self, hooked: _Hooked):
        linear = isinstance(hooked.module, nn.Linear)

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if not self._phases:
                return
            x = args[0] if args and isinstance(args[0], torch.Tensor) else _first_tensor(tuple(kwargs.values()))
            if x is None:
                return
            phase = self._phases[-1]
            if hooked.kind == "dense" and phase not in self.effective_mac_phases:
                # Shapes alone give the count here, so the input is not read.
                if linear:
                    _book_linear_shape(hooked.tally(phase), module, x)
                else:
                    self._book_shape(hooked.tally(phase), module, x)
                return
            with torch.no_grad():
                if linear and hooked.kind == "spike" and hooked.spike_checks_left == 0:
                    self._count_linear_spikes(hooked, module, x.detach(), phase)
                else:
                    self._count_synapse(hooked, module, x.detach(), phase)

        return hook

    # ----------------------------------------------------------------------------- counting

    def _count_encoder(self, hooked: _Hooked, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        record = hooked.tally(self._phases[-1])
        rows = _leading_rows(args, kwargs)
        record.calls += 1
        record.rows += rows
        record.out_units = int(module.obs_dim) * int(module.pop_size)
        record.mac += rows * record.out_units

        observations = _first_tensor(args) if args else _first_tensor(tuple(kwargs.values()))
        if observations is not None:
            record.add_probe(nan_probe(observations.detach()))

        inner_neuron_ran = self._neuron_calls != hooked.neuron_calls_before
        if not inner_neuron_ran and getattr(module, "emits_spikes", True):
            spikes = _first_tensor(output)
            record.neuron_updates += spikes.numel() if spikes is not None else 0

    def _count_linear_spikes(self, hooked: _Hooked, layer: nn.Linear, x: torch.Tensor, phase: str) -> None:
        # The common case of a training run, a declared spike Linear past its spike checks, is
        # counted here without the general path's bookkeeping: one column sum and one add.
        if x.dim() == 0 or x.shape[-1] != layer.in_features:
            raise ValueError(f"input of shape {tuple(x.shape)} does not match in_features={layer.in_features} of {layer}")
        self._refresh_fanout(hooked, layer.weight)
        record = hooked.tally(phase)
        rows = x.numel() // layer.in_features if layer.in_features else 0
        record.calls += 1
        record.rows += rows
        record.out_units = layer.out_features
        record.ac_connections += rows * layer.in_features * layer.out_features
        record.spike_slots += x.numel()
        record.add_pending("spike", column_sums(x.reshape(rows, layer.in_features)))

    def _book_shape(self, record: _Tally, module: nn.Module, x: torch.Tensor) -> None:
        call = shape_call(module, x, self._connections)
        record.unmeasured_mac += call.connections
        self._book(record, call, "dense", x.numel())

    def _count_synapse(self, hooked: _Hooked, module: nn.Module, x: torch.Tensor, phase: str) -> None:
        kind = hooked.kind if hooked.kind is not None else detect_kind(x)
        if kind == "dense" and phase not in self.effective_mac_phases:
            self._book_shape(hooked.tally(phase), module, x)
            return

        check = kind != "dense" and hooked.take_spike_check()
        record = hooked.tally(phase)
        if isinstance(module, nn.Linear):
            self._refresh_fanout(hooked, module.weight)
            call = linear_call(module, x, kind, check)
        elif isinstance(module, nn.modules.conv._ConvNd):
            self._refresh_fanout(hooked, module.weight)
            call = conv_call(module, x, kind, self._connections, check)
            pending = record.pending.get("dense" if kind == "dense" else "spike")
            if pending is not None and pending.shape != call.per_input.shape:
                record.flush(hooked, "dense" if kind == "dense" else "spike")
        else:
            call = elementwise_call(module, x, kind, check)
        self._book(record, call, kind, x.numel())

    def _refresh_fanout(self, hooked: _Hooked, weight: torch.Tensor) -> None:
        # Pending counts were taken with the previous weights, so they are multiplied by the
        # previous fan-out before it is replaced. The weight reference keeps its id and storage
        # from being reused while it is the key.
        key = (weight._version, weight.data_ptr())
        if hooked.weight is weight and hooked.weight_key == key:
            return
        fanout = layer_fanout(hooked.module, weight)
        same = isinstance(fanout, float) and isinstance(hooked.fanout, float) and fanout == hooked.fanout
        if not same:
            hooked.flush()
            hooked.fanout = fanout
        hooked.weight, hooked.weight_key = weight, key

    def _book(self, record: _Tally, call: SynapseCall, kind: str, elements: int) -> None:
        group = "dense" if kind == "dense" else "spike"
        record.calls += 1
        record.rows += call.rows
        record.out_units = call.out_units
        if group == "dense":
            record.mac += call.connections
            record.dense_slots += elements
        else:
            record.ac_connections += call.connections
            record.spike_slots += elements
            record.spike_kind = kind
            record.add_check(call.gap, call.extremes)

        if call.per_input is not None:
            record.add_pending(group, call.per_input)
        elif call.ops is not None:
            record.add_sums(group, call.ops, call.nonzero)

    # ----------------------------------------------------------------------------- reading

    def _read(self, phase: str) -> list[tuple[_Hooked, _Tally, dict[str, list[float]]]]:
        """Return (module, tally, host values) for every module called in ``phase``.

        All device counters are copied to the host in one transfer.
        """
        _check_phase(phase)
        called = [(hooked, hooked.tallies[phase]) for hooked in self._roots + self._hooked if phase in hooked.tallies]
        reader = _Reader()
        handles = [record.register_reads(reader, hooked) for hooked, record in called]
        reader.read()
        return [(hooked, record, handle.values(reader)) for (hooked, record), handle in zip(called, handles)]

    def _reset(self, phase: str) -> None:
        for hooked in self._roots + self._hooked:
            hooked.tallies.pop(phase, None)


# --------------------------------------------------------------------------------- helpers


def _book_linear_shape(record: _Tally, layer: nn.Linear, x: torch.Tensor) -> None:
    if x.dim() == 0 or x.shape[-1] != layer.in_features:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match in_features={layer.in_features} of {layer}")
    rows = x.numel() // layer.in_features if layer.in_features else 0
    connections = rows * layer.in_features * layer.out_features
    record.calls += 1
    record.rows += rows
    record.out_units = layer.out_features
    record.mac += connections
    record.unmeasured_mac += connections
    record.dense_slots += x.numel()


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}, expected one of {', '.join(PHASES)}")


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _leading_rows(args: tuple, kwargs: dict) -> int:
    tensor = _first_tensor(args)
    if tensor is None:
        tensor = _first_tensor(tuple(kwargs.values()))
    if tensor is None:
        return 0
    return 1 if tensor.dim() <= 1 else int(tensor.shape[0])


def _report(hooked: _Hooked, record: _Tally, values: dict[str, list[float]]) -> dict[str, Any]:
    spike = values.get("spike", [0.0, 0.0])
    dense = values.get("dense", [0.0, 0.0])
    return {
        "name": hooked.name,
        "role": hooked.role,
        "kind": _report_kind(hooked, record),
        "neuron_model": hooked.neuron_model,
        "calls": record.calls,
        "rows": record.rows,
        "ac": _as_count(spike[0]),
        "mac": record.mac,
        "effective_mac": _effective_mac(hooked, record, dense),
        "ac_connections": record.ac_connections,
        "neuron_updates": record.neuron_updates,
        "nonzero_inputs": _as_count(spike[1]) + _as_count(dense[1]),
        "spike_inputs": _as_count(spike[1]),
        "spike_input_slots": record.spike_slots,
        "input_elements": record.spike_slots + record.dense_slots,
        "out_units": record.out_units,
    }


def _effective_mac(hooked: _Hooked, record: _Tally, dense: list[float]) -> int:
    encoder_mac = record.mac if hooked.role == "encoder" else 0
    return _as_count(dense[0]) + record.unmeasured_mac + encoder_mac


def _report_kind(hooked: _Hooked, record: _Tally) -> str:
    if hooked.role != "synapse":
        return hooked.role
    if hooked.kind is not None:
        return "dense" if hooked.kind == "dense" else "spike"
    if record.spike_slots and record.dense_slots:
        return "mixed"
    return "dense" if record.dense_slots else "spike"


def _as_count(value: float) -> int:
    # NaN is reported by _invalid_inputs; here it counts as zero.
    return int(round(value)) if math.isfinite(value) else 0


def _invalid_inputs(record: _Tally, values: dict[str, list[float]]) -> str | None:
    spike = values.get("spike", [])
    gap = values.get("gap", [0.0])[0]
    extremes = values.get("extremes", [0.0, 0.0])
    if any(math.isnan(value) for value in values.get("dense", [])):
        return "received NaN input values"
    if any(not math.isfinite(value) for value in values.get("probe", [])):
        return "received NaN or infinite input values"
    if any(math.isnan(value) for value in spike + [gap] + extremes):
        return "is fed spikes but received NaN input values"

    signed = record.spike_kind == "signed"
    if gap != 0 or extremes[0] > (1.0 if signed else 0.0) or extremes[1] > 1.0:
        allowed = "{-1, 0, 1}" if signed else "{0, 1}"
        return (
            f"is declared input_kind='spike' but received values outside {allowed} "
            f"(min {-extremes[0]:g}, max {extremes[1]:g}). Declare it 'dense', set signed_spikes = True "
            "for -1 spikes, or fix the spike generation"
        )
    return None


def _raise_on_invalid(items: list[tuple[_Hooked, _Tally, dict[str, list[float]]]], phase: str) -> None:
    problems = []
    for hooked, record, values in items:
        problem = _invalid_inputs(record, values) if values else None
        if problem:
            problems.append(f"{hooked.name} {problem}")
    if problems:
        raise ValueError(f"invalid inputs while counting phase {phase!r}:\n  " + "\n  ".join(problems))


def _sum_items(items: list[tuple[_Hooked, _Tally, dict[str, list[float]]]]) -> OperationCounts:
    counts = OperationCounts()
    for hooked, record, values in items:
        if hooked.role == "root":
            counts.samples += record.rows
            counts.forward_passes += record.calls
            continue
        spike = values.get("spike", [0.0, 0.0])
        counts.ac += _as_count(spike[0])
        counts.spike_inputs += _as_count(spike[1])
        counts.mac += record.mac
        counts.effective_mac += _effective_mac(hooked, record, values.get("dense", [0.0, 0.0]))
        counts.ac_connections += record.ac_connections
        counts.spike_input_slots += record.spike_slots
        if record.neuron_updates:
            key = hooked.neuron_model
            counts.neuron_updates[key] = counts.neuron_updates.get(key, 0) + record.neuron_updates
    return counts


# --------------------------------------------------------------------------------- one-shot counting


def count_operations(module: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> dict[str, Any]:
    """Run ``module(*inputs)`` once without gradients and return its operations per sample.

    Per-sample values are totals divided by the rows of the module's input, summed over all T
    steps and all layers. ``layers`` lists every hooked module with its per-sample ``ac``,
    ``mac``, ``effective_mac``, ``neuron_updates``, ``input_firing_rate`` (spike-fed layers only,
    else None), ``neurons`` (units per sample and step) and ``time_steps`` (rows or calls per
    sample). ``totals`` contains the exact integer counts of the whole batch.

    :raises ValueError: when the input has no rows, or when counting finds invalid inputs.
    """
    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    counter = OperationCounter(module, spike_check_calls=None)
    try:
        with torch.no_grad(), counter.phase("acting"):
            module(*args)
        layers = counter.layer_counts("acting")
        totals = counter.take("acting")
    finally:
        counter.remove()

    if totals.samples == 0:
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        raise ValueError(
            f"the input has 0 rows (shapes {shapes}), so per-sample counts are undefined. Pass at least one sample"
        )
    return _per_sample(totals, layers)


def _per_sample(totals: OperationCounts, layers: list[dict[str, Any]]) -> dict[str, Any]:
    samples = totals.samples
    passes = max(totals.forward_passes, 1)
    rows_per_pass = samples / passes
    rows = [_layer_per_sample(layer, samples, passes, rows_per_pass) for layer in layers if layer["calls"]]
    return {
        "ac": totals.ac / samples,
        "mac": totals.mac / samples,
        "effective_mac": totals.effective_mac / samples,
        "neuron_updates": {kind: value / samples for kind, value in totals.neuron_updates.items()},
        "ac_connections": totals.ac_connections / samples,
        "input_firing_rate": totals.input_firing_rate,
        "samples": samples,
        "layers": rows,
        "totals": totals.as_dict(),
    }


def _layer_per_sample(layer: dict[str, Any], samples: int, passes: int, rows_per_pass: float) -> dict[str, Any]:
    if layer["role"] == "neuron":
        time_steps = layer["calls"] / passes
        neurons = layer["neuron_updates"] / (layer["calls"] * rows_per_pass)
    else:
        time_steps = layer["rows"] / samples
        neurons = layer["out_units"]
    slots = layer["spike_input_slots"]
    return {
        "name": layer["name"],
        "kind": layer["kind"],
        "ac": layer["ac"] / samples,
        "mac": layer["mac"] / samples,
        "effective_mac": layer["effective_mac"] / samples,
        "neuron_updates": layer["neuron_updates"] / samples,
        "input_firing_rate": layer["spike_inputs"] / slots if slots else None,
        "neurons": neurons,
        "time_steps": time_steps,
    }
