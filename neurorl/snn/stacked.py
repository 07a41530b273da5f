"""Stacked networks: K seeds' copies of one actor run as one batched computation.

Every parameter of a stacked module is the K per-seed parameters stacked along a new leading
axis, and every activation carries the seed axis first: observations [K, B, obs_dim], spikes
[K, T, B, N]. A linear layer is one ``torch.baddbmm`` for all K seeds. Its weights keep
``nn.Linear``'s [out, in] layout, so each seed's product is the same GEMM as ``F.linear`` and
gives bitwise equal outputs on CPU (torch 2.13). The neuron dynamics are elementwise on
[K, T, B, N] with the equations of :func:`neurorl.snn.neurons.lif_sequence`. PopSAN's grouped
Conv1d decoder becomes one depthwise product over K·act_dim channels, the arithmetic of each
seed's decoder, and so is bitwise equal too (an einsum differs by rounding).

Seed k's slice never reads another seed's values, so seeds stay independent. Every ``forward``
takes ``seeds``, a slice of the stack, to run only those seeds (the resilient replay check runs
one seed at a time).

Energy: :class:`StackedOperationCounter` counts, per seed and in closed form, the operations
that :class:`neurorl.energy.OperationCounter` books on the unstacked actor. A spike-fed layer
costs seed k's non-zero inputs times that seed's non-zero fan-out in ACs. A dense-fed layer
costs ``rows·in·out`` MACs, and in the acting and replay phases effective MACs that skip zero
inputs and zero weights. The encoder costs ``B·obs_dim·pop_size`` MACs, every neuron one update
per step, and each root network books its samples and forward passes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Collection, Iterator, Sequence

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from neurorl.energy.counting import EFFECTIVE_MAC_PHASES, PHASES
from neurorl.energy.counts import OperationCounts
from neurorl.energy.synapses import nonzero_indicator
from neurorl.snn import linear
from neurorl.snn.actors import MLPActor, PopSpikingActor
from neurorl.snn.decoding import PopulationDecoder, depthwise_dot
from neurorl.snn.encoding import PopulationEncoder
from neurorl.snn.neurons import CurrentLIF, NeuronLayer, lif_sequence, reset_kind

SeedSlice = slice | None

# Counts derived from shapes alone, kept on the host as int64 per seed. Data-dependent counts
# ("ac", "spike_inputs", "measured_effective_mac", "input_probe") stay float64 on the input's device.
_SHAPE_FIELDS = ("mac", "shape_effective_mac", "ac_connections", "spike_input_slots", "samples", "forward_passes")


# ------------------------------------------------------------------------------------ counting


@dataclass
class _PhaseTally:
    """Per-seed counts of one phase."""

    num_seeds: int
    shape: dict[str, np.ndarray] = field(default_factory=dict)
    neuron_updates: dict[str, np.ndarray] = field(default_factory=dict)
    data: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = {name: np.zeros(self.num_seeds, dtype=np.int64) for name in _SHAPE_FIELDS}


@dataclass
class _ActivePhase:
    """A phase on the counter's stack: its name, the seeds that book, and bookings by seed slice."""

    name: str
    mask: np.ndarray
    bookings: dict[tuple, CountBooking] = field(default_factory=dict)


class CountBooking:
    """Booking target of one layer call: the tally and the seeds of the call that count in this phase.

    ``local`` indexes the call's seed axis and ``global_`` the counter's seeds. Seeds excluded
    by :meth:`StackedOperationCounter.phase` are in neither.
    """

    def __init__(
        self, tally: _PhaseTally, local: np.ndarray, global_: np.ndarray, called: int, whole: bool, measures_zeros: bool
    ) -> None:
        self.tally = tally
        self.local = local
        self.global_ = global_
        self.called = called
        self.whole = whole
        self.measures_zeros = measures_zeros
        self._index_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def add_shape(self, name: str, per_seed: int) -> None:
        """Add ``per_seed`` to count ``name`` of every booked seed."""
        self.tally.shape[name][self.global_] += per_seed

    def add_neurons(self, model: str, per_seed: int) -> None:
        """Add ``per_seed`` neuron updates of ``model`` to every booked seed."""
        updates = self.tally.neuron_updates.get(model)
        if updates is None:
            updates = self.tally.neuron_updates[model] = np.zeros(self.tally.num_seeds, dtype=np.int64)
        updates[self.global_] += per_seed

    def add_data(self, name: str, values: torch.Tensor) -> None:
        """Add ``values`` [seeds of the call] to the data-dependent count ``name``."""
        values = values.detach().to(torch.float64)
        previous = self.tally.data.get(name)
        if previous is None:
            previous = torch.zeros(self.tally.num_seeds, dtype=torch.float64, device=values.device)
        elif previous.device != values.device:
            previous = previous.to(values.device)
        # Accumulators are replaced, never updated in place, because one created under
        # torch.inference_mode cannot be updated in place outside it.
        if self.whole:
            self.tally.data[name] = previous + values
            return
        local, global_ = self._indices(values.device)
        self.tally.data[name] = previous.index_add(0, global_, values.index_select(0, local))

    def _indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._index_cache.get(device)
        if cached is None:
            cached = (torch.as_tensor(self.local, device=device), torch.as_tensor(self.global_, device=device))
            self._index_cache[device] = cached
        return cached


class StackedOperationCounter:
    """Count ACs, MACs and neuron updates of stacked modules per seed, in closed form.

    The counts of seed k equal what :class:`neurorl.energy.OperationCounter` counts on seed k's
    unstacked network for the same inputs (tested on PopSAN, the ANN actor and MLP critics), with one
    exception: the binary check of spike inputs is not repeated here, because the stacked
    neuron layers are the only producers of those inputs. Non-finite inputs are detected as the
    OperationCounter does: in spike-fed layers and encoders in every phase, in dense-fed layers in
    the ``effective_mac_phases``.

    :param modules: stacked root networks (actor, critics); each layer inside them books here.
        A layer may belong to one counter only.
    :param effective_mac_phases: phases in which dense-fed layers count their non-zero inputs
        (``effective_mac``); elsewhere ``effective_mac`` is booked equal to ``mac``, as the
        OperationCounter does.
    """

    def __init__(self, *modules: nn.Module, effective_mac_phases: Collection[str] = EFFECTIVE_MAC_PHASES) -> None:
        problems = _counter_problems(modules, effective_mac_phases)
        if problems:
            raise ValueError("invalid StackedOperationCounter arguments:\n  " + "\n  ".join(problems))
        self.num_seeds = modules[0].num_seeds
        self.effective_mac_phases = frozenset(effective_mac_phases)
        self._phases: list[tuple[str, np.ndarray]] = []
        self._tallies: dict[str, _PhaseTally] = {}
        for module in modules:
            for sub in module.modules():
                if isinstance(sub, StackedModule):
                    sub.counter = self

    @property
    def active_phase(self) -> str | None:
        """Phase whose operations are being counted, or None outside every phase."""
        return self._phases[-1].name if self._phases else None

    @contextlib.contextmanager
    def phase(self, name: str, seeds: Sequence[int] | None = None) -> Iterator[StackedOperationCounter]:
        """Count forward passes inside the ``with`` block as phase ``name``.

        :param seeds: indices of the seeds whose operations count; the others run but book
            nothing (evaluation steps seeds whose episodes have ended with placeholder inputs).
        """
        _check_phase(name)
        mask = np.ones(self.num_seeds, dtype=bool)
        if seeds is not None:
            mask[:] = False
            for index in seeds:
                if not 0 <= int(index) < self.num_seeds:
                    raise ValueError(f"seed index {index!r} is outside the stack of {self.num_seeds} seeds")
                mask[int(index)] = True
        self._phases.append(_ActivePhase(name, mask))
        try:
            yield self
        finally:
            self._phases.pop()

    def booking(self, seeds: SeedSlice, called: int) -> CountBooking | None:
        """Return where a call on ``called`` stacked seeds (``seeds`` of the stack) books, or None."""
        if not self._phases:
            return None
        active = self._phases[-1]
        tally = self._tallies.get(active.name)
        if tally is None:
            tally = self._tallies[active.name] = _PhaseTally(self.num_seeds)
        key = (None, None, None) if seeds is None else (seeds.start, seeds.stop, seeds.step)
        booking = active.bookings.get(key)
        if booking is None or booking.tally is not tally:
            positions = np.arange(self.num_seeds)[seeds if seeds is not None else slice(None)]
            keep = active.mask[positions]
            whole = bool(keep.all()) and len(positions) == self.num_seeds
            measures_zeros = active.name in self.effective_mac_phases
            booking = CountBooking(tally, np.nonzero(keep)[0], positions[keep], len(positions), whole, measures_zeros)
            active.bookings[key] = booking
        if booking.called != called:
            raise ValueError(f"a call on {called} seeds cannot book to seeds {seeds!r} of a stack of {self.num_seeds}")
        return booking

    def take(self, phase: str) -> list[OperationCounts]:
        """Return every seed's counts in ``phase`` since the last take, and reset them.

        :raises ValueError: when a seed's layers received NaN or infinite inputs in the phase
            (the phase is reset before raising).
        """
        _check_phase(phase)
        tally = self._tallies.pop(phase, None)
        if tally is None:
            return [OperationCounts() for _ in range(self.num_seeds)]
        return _read_tally(tally, range(self.num_seeds), phase)

    def take_seed(self, phase: str, index: int) -> OperationCounts:
        """Return seed ``index``'s counts in ``phase`` and reset them; other seeds keep theirs."""
        _check_phase(phase)
        if not 0 <= index < self.num_seeds:
            raise ValueError(f"seed index {index!r} is outside the stack of {self.num_seeds} seeds")
        tally = self._tallies.get(phase)
        if tally is None:
            return OperationCounts()
        try:
            return _read_tally(tally, [index], phase)[0]
        finally:
            _reset_seed(tally, index)


def _counter_problems(modules: Sequence[nn.Module], effective_mac_phases: Collection[str]) -> list[str]:
    problems = []
    if not modules:
        problems.append("pass at least one stacked module to count")
    for index, module in enumerate(modules):
        if not isinstance(module, StackedModule):
            problems.append(f"argument {index} is a {type(module).__name__}, not a stacked module")
    stacked = [m for m in modules if isinstance(m, StackedModule)]
    sizes = sorted({m.num_seeds for m in stacked})
    if len(sizes) > 1:
        problems.append(f"the modules stack different numbers of seeds: {sizes}")
    for module in stacked:
        for sub in module.modules():
            if isinstance(sub, StackedModule) and sub.counter is not None:
                problems.append(f"{type(sub).__name__} inside {type(module).__name__} already books to another counter")
                break
    if isinstance(effective_mac_phases, str) or any(p not in PHASES for p in effective_mac_phases):
        problems.append(f"effective_mac_phases must be a collection of {PHASES}, got {effective_mac_phases!r}")
    return problems


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")


def _read_tally(tally: _PhaseTally, indices: Sequence[int], phase: str) -> list[OperationCounts]:
    data = {name: tensor.tolist() for name, tensor in tally.data.items()}
    invalid = [index for index in indices if any(not math.isfinite(values[index]) for values in data.values())]
    if invalid:
        for index in invalid:
            _reset_seed(tally, index)
        raise ValueError(
            f"invalid inputs while counting phase {phase!r}: seed index(es) {invalid} received NaN or infinite "
            "values in a spike-fed layer, an encoder or a dense-fed layer; check the observations and the weights"
        )
    return [_seed_counts(tally, data, index) for index in indices]


def _seed_counts(tally: _PhaseTally, data: dict[str, list[float]], index: int) -> OperationCounts:
    def measured(name: str) -> int:
        return int(round(data[name][index])) if name in data else 0

    shape = {name: int(values[index]) for name, values in tally.shape.items()}
    return OperationCounts(
        ac=measured("ac"),
        mac=shape["mac"],
        effective_mac=shape["shape_effective_mac"] + measured("measured_effective_mac"),
        neuron_updates={model: int(values[index]) for model, values in tally.neuron_updates.items() if values[index]},
        samples=shape["samples"],
        forward_passes=shape["forward_passes"],
        ac_connections=shape["ac_connections"],
        spike_inputs=measured("spike_inputs"),
        spike_input_slots=shape["spike_input_slots"],
    )


def _reset_seed(tally: _PhaseTally, index: int) -> None:
    for values in (*tally.shape.values(), *tally.neuron_updates.values()):
        values[index] = 0
    for name, tensor in tally.data.items():
        tally.data[name] = tensor.index_fill(0, torch.tensor([index], device=tensor.device), 0.0)


# ------------------------------------------------------------------------------------ modules


class StackedModule(nn.Module):
    """Base of modules whose parameters hold K seeds' copies stacked along a new leading axis.

    Each stacked parameter remembers its K source tensors, so :meth:`copy_to_sources` can write
    the trained values back into the per-seed modules (for actor.pt and checkpoints).
    """

    def __init__(self, num_seeds: int) -> None:
        super().__init__()
        if num_seeds < 1:
            raise ValueError(f"a stack needs at least one seed, got {num_seeds}")
        self.num_seeds = num_seeds
        self.counter: StackedOperationCounter | None = None
        self._sources: dict[str, list[torch.Tensor]] = {}

    def stack_parameter(self, name: str, sources: Sequence[torch.Tensor]) -> nn.Parameter:
        """Register ``name`` as the stack of ``sources`` (one tensor per seed, equal shapes)."""
        shapes = {tuple(source.shape) for source in sources}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack {name}: the seeds' tensors have different shapes {sorted(shapes)}")
        parameter = nn.Parameter(torch.stack([source.detach() for source in sources]).clone())
        parameter.requires_grad_(sources[0].requires_grad)
        self.register_parameter(name, parameter)
        self._sources[name] = list(sources)
        return parameter

    @torch.no_grad()
    def copy_to_sources(self) -> None:
        """Write every stacked parameter back into the per-seed tensors it was built from."""
        for module in self.modules():
            if not isinstance(module, StackedModule):
                continue
            for name, sources in module._sources.items():
                stacked = getattr(module, name)
                for index, source in enumerate(sources):
                    source.copy_(stacked[index])

    def selected(self, seeds: SeedSlice) -> int:
        """Return how many seeds ``seeds`` selects from this stack."""
        return self.num_seeds if seeds is None else len(range(self.num_seeds)[seeds])

    def booking(self, seeds: SeedSlice, called: int) -> CountBooking | None:
        """Return where this call books its counts, or None when nothing is being counted."""
        return None if self.counter is None else self.counter.booking(seeds, called)

    def book_root(self, seeds: SeedSlice, rows: torch.Tensor) -> None:
        """Book one forward pass over ``rows.shape[1]`` samples per seed (root networks only)."""
        booking = self.booking(seeds, rows.shape[0])
        if booking is not None:
            booking.add_shape("samples", int(rows.shape[1]))
            booking.add_shape("forward_passes", 1)


def _pick(tensor: torch.Tensor, seeds: SeedSlice) -> torch.Tensor:
    return tensor if seeds is None else tensor[seeds]


class StackedLinear(StackedModule):
    """K ``nn.Linear`` layers as one batched product: inputs [K, rows, in] → outputs [K, rows, out].

    :param linears: one layer per seed, equal shapes.
    :param input_kind: ``"spike"`` (inputs in {0, 1}, booked as ACs) or ``"dense"`` (MACs).
    """

    def __init__(self, linears: Sequence[nn.Linear], input_kind: str) -> None:
        super().__init__(len(linears))
        if input_kind not in ("spike", "dense"):
            raise ValueError(f"input_kind={input_kind!r} is invalid; use 'spike' or 'dense'")
        if any(not isinstance(layer, nn.Linear) for layer in linears):
            raise ValueError(f"StackedLinear needs nn.Linear layers, got {[type(layer).__name__ for layer in linears]}")
        self.input_kind = input_kind
        self.in_features = linears[0].in_features
        self.out_features = linears[0].out_features
        # [K, out, in]: the layout of nn.Linear, so baddbmm runs the same GEMM as F.linear.
        self.stack_parameter("weight", [layer.weight for layer in linears])
        has_bias = [layer.bias is not None for layer in linears]
        if len(set(has_bias)) != 1:
            raise ValueError("cannot stack linear layers of which only some have a bias")
        if has_bias[0]:
            self.stack_parameter("bias", [layer.bias for layer in linears])
        else:
            self.register_parameter("bias", None)
        self._fanout_key: tuple[int, int] | None = None
        self._fanout: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, seeds: SeedSlice = None) -> torch.Tensor:
        weight = _pick(self.weight, seeds)
        bias = None if self.bias is None else _pick(self.bias, seeds)
        booking = self.booking(seeds, x.shape[0])
        if booking is not None:
            self._count(booking, x, seeds)

        # F.linear takes a matrix-vector path for one output or one or two rows, which a batched
        # product does not reproduce bitwise, so those (cheap) shapes run one F.linear per seed.
        if self.out_features == 1 or x.shape[1] <= 2:
            return torch.stack([F.linear(x[i], weight[i], None if bias is None else bias[i]) for i in range(x.shape[0])])
        # Where a single-seed layer runs on oneDNN, each seed's product does too, so a seed's
        # training still matches its single-seed run bit for bit.
        if linear.onednn_applies(x[0], weight[0], None if bias is None else bias[0]):
            return _StackedOneDNNLinearFunction.apply(x, weight, bias)
        return _StackedLinearFunction.apply(x, weight, bias)

    @torch.no_grad()
    def _count(self, booking: CountBooking, x: torch.Tensor, seeds: SeedSlice) -> None:
        rows = x.shape[1]
        connections = rows * self.in_features * self.out_features
        if self.input_kind == "dense":
            booking.add_shape("mac", connections)
            if not booking.measures_zeros:
                booking.add_shape("shape_effective_mac", connections)
                return
            # Column sums are exact in float32 below 2**24 rows, and NaN inputs stay NaN.
            per_input = nonzero_indicator(x.detach(), "dense").sum(1)
            booking.add_data("measured_effective_mac", self._ops(per_input, seeds))
            return

        per_input = x.detach().sum(1)
        booking.add_data("ac", self._ops(per_input, seeds))
        booking.add_data("spike_inputs", per_input.to(torch.float64).sum(-1))
        booking.add_shape("ac_connections", connections)
        booking.add_shape("spike_input_slots", rows * self.in_features)

    def _ops(self, per_input: torch.Tensor, seeds: SeedSlice) -> torch.Tensor:
        fanout = _pick(self.fanout(), seeds).to(per_input.device)
        return (per_input.to(torch.float64) * fanout).sum(-1)

    def fanout(self) -> torch.Tensor:
        """Return each input's non-zero outgoing weights per seed, float64 [K, in], cached per weight version."""
        key = (self.weight._version, self.weight.data_ptr())
        if self._fanout is None or self._fanout_key != key:
            self._fanout = _linear_fanout(self.weight.detach())
            self._fanout_key = key
        return self._fanout


class _StackedLinearFunction(torch.autograd.Function):
    """x·Wᵀ + b on stacked inputs, with the backward products of ``F.linear``.

    Autograd's own backward of ``baddbmm`` forms the weight gradient as xᵀ·grad and transposes
    it, which rounds differently from F.linear's gradᵀ·x for narrow inputs and adds a copy.
    With these products each seed's gradients are bitwise those of ``F.linear`` for the shapes
    tested (torch 2.13, x86_64 CPU), so a seed's training matches its single-seed run.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class _StackedOneDNNLinearFunction(torch.autograd.Function):
    """x·Wᵀ + b on stacked inputs, one :func:`neurorl.snn.linear.linear_product` per seed.

    Each seed's forward and backward products are those of :class:`neurorl.snn.linear.Linear` on
    that seed's slice, so its results equal the single-seed layer's bit for bit.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        seeds = range(x.shape[0])
        return torch.stack([linear.linear_product(x[i], weight[i], None if bias is None else bias[i]) for i in seeds])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        seeds = range(x.shape[0])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.stack([linear.linear_product(grad[i], weight[i].t(), None) for i in seeds])
        if ctx.needs_input_grad[1]:
            grad_weight = torch.stack([linear.linear_product(grad[i].t(), x[i].t(), None) for i in seeds])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(1)
        return grad_x, grad_weight, grad_bias


@torch.no_grad()
def _linear_fanout(weight: torch.Tensor) -> torch.Tensor:
    # A weight without zeros (the usual case during training) has fan-out out_features for every
    # input. One count_nonzero pass finds that, cheaper than the per-column count. On other
    # devices the test would need a host synchronisation, so the column count always runs there.
    stacked, out_features, in_features = weight.shape
    if weight.device.type == "cpu" and int(torch.count_nonzero(weight)) == weight.numel():
        return torch.full((stacked, in_features), float(out_features), dtype=torch.float64)
    return nonzero_indicator(weight, "dense").sum(1, dtype=torch.float64)


class StackedNeuronLayer(StackedModule):
    """K :class:`NeuronLayer` populations stepped together: currents [K, T, B, N] → spikes [K, T, B, N].

    Supports what :func:`neurorl.snn.neurons.lif_sequence` runs (snnTorch ``Leaky`` and
    ``Synaptic`` with reset to zero or by subtraction, and :class:`CurrentLIF`), with the same
    equations, constants and surrogate gradient. The constants are not learned, so every seed
    must have the same ones.
    """

    def __init__(self, layers: Sequence[NeuronLayer]) -> None:
        super().__init__(len(layers))
        neurons = [layer.neuron if isinstance(layer, NeuronLayer) else layer for layer in layers]
        _check_neurons(neurons)
        first = neurons[0]
        self.neuron_model = layers[0].neuron_model if isinstance(layers[0], NeuronLayer) else type(first).__name__
        self.reset = reset_kind(first)
        self.synaptic = isinstance(first, snn.Synaptic)
        self.spike_grad = first.spike_grad
        self.register_buffer("beta", first.beta.detach().clone())
        self.register_buffer("threshold", first.threshold.detach().clone())
        if self.synaptic:
            self.register_buffer("alpha", first.alpha.detach().clone())

    def forward(self, currents: torch.Tensor, seeds: SeedSlice = None) -> torch.Tensor:
        alpha = self.alpha if self.synaptic else None
        output = lif_sequence(currents, self.beta, self.threshold, alpha, self.reset, self.spike_grad, time_dim=1)

        booking = self.booking(seeds, output.shape[0])
        if booking is not None:
            booking.add_neurons(self.neuron_model, output[0].numel())
        return output


def _check_neurons(neurons: Sequence[nn.Module]) -> None:
    kinds = {type(neuron) for neuron in neurons}
    if len(kinds) != 1:
        raise ValueError(f"cannot stack different neuron models: {sorted(kind.__name__ for kind in kinds)}")
    first = neurons[0]
    if type(first) not in (snn.Leaky, snn.Synaptic, CurrentLIF):
        raise ValueError(
            f"cannot stack neuron model {type(first).__name__}; stacked layers support snnTorch Leaky, "
            "Synaptic and CurrentLIF (the neurons of popsan with --neuron leaky or clif)"
        )
    plain = not first.inhibition and not first.state_quant and first.reset_delay
    if not plain or first._reset_mechanism not in ("zero", "subtract") or float(first.graded_spikes_factor) != 1.0:
        raise ValueError(
            f"cannot stack {type(first).__name__} with inhibition, state quantisation, graded spikes or reset "
            f"{first._reset_mechanism!r}; only plain neurons with reset 'zero' or 'subtract' are supported"
        )
    for name in ("beta", "threshold", "alpha", "graded_spikes_factor"):
        values = [getattr(neuron, name, None) for neuron in neurons]
        if values[0] is None:
            continue
        if any(not torch.equal(torch.as_tensor(value), torch.as_tensor(values[0])) for value in values):
            raise ValueError(f"cannot stack neurons whose {name} differs between seeds: {[float(v) for v in values]}")
    for neuron in neurons:
        if neuron._reset_mechanism != first._reset_mechanism:
            raise ValueError("cannot stack neurons with different reset mechanisms")


class StackedPopulationEncoder(StackedModule):
    """K PopSAN population encoders: observations [K, B, obs_dim] → spikes [K, T, B, obs_dim·pop_size].

    Only the deterministic spike mode is stacked: Bernoulli spikes draw from torch's global
    generator, so K seeds sharing one process would share one random stream.
    """

    def __init__(self, encoders: Sequence[PopulationEncoder]) -> None:
        super().__init__(len(encoders))
        modes = sorted({encoder.spike_mode for encoder in encoders})
        if modes != ["deterministic"]:
            raise NotImplementedError(
                f"stacked population encoders support only the deterministic spike mode, got {modes}; "
                "train Bernoulli encoders (--encoder bernoulli) one seed per process"
            )
        shapes = {(encoder.obs_dim, encoder.pop_size) for encoder in encoders}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack encoders of different sizes (obs_dim, pop_size): {sorted(shapes)}")
        self.obs_dim = encoders[0].obs_dim
        self.pop_size = encoders[0].pop_size
        self.stack_parameter("mean", [encoder.mean for encoder in encoders])
        self.stack_parameter("std", [encoder.std for encoder in encoders])
        self.spike_generator = StackedNeuronLayer([encoder.spike_generator for encoder in encoders])

    @property
    def out_features(self) -> int:
        return self.obs_dim * self.pop_size

    def forward(self, obs: torch.Tensor, T: int, seeds: SeedSlice = None) -> torch.Tensor:
        z = (obs.unsqueeze(-1) - _pick(self.mean, seeds)) / _pick(self.std, seeds)
        activation = torch.exp(-0.5 * z * z).flatten(2)

        booking = self.booking(seeds, obs.shape[0])
        if booking is not None:
            macs = obs.shape[1] * self.out_features
            booking.add_shape("mac", macs)
            booking.add_shape("shape_effective_mac", macs)
            booking.add_data("input_probe", obs.detach().sum(dim=(1, 2), dtype=torch.float64))

        currents = activation.unsqueeze(1).expand(-1, T, -1, -1)
        return self.spike_generator(currents, seeds)


class StackedPopulationDecoder(StackedModule):
    """K PopSAN decoders: firing rates [K, B, act_dim·pop_size] → pre-activations [K, B, act_dim].

    One depthwise product over K·act_dim channels (:func:`depthwise_dot`) runs the same arithmetic as
    each seed's decoder.
    """

    def __init__(self, decoders: Sequence[PopulationDecoder]) -> None:
        super().__init__(len(decoders))
        shapes = {(decoder.act_dim, decoder.pop_size) for decoder in decoders}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack decoders of different sizes (act_dim, pop_size): {sorted(shapes)}")
        self.act_dim = decoders[0].act_dim
        self.pop_size = decoders[0].pop_size
        self.stack_parameter("weight", [decoder.conv.weight for decoder in decoders])
        self.stack_parameter("bias", [decoder.conv.bias for decoder in decoders])

    def forward(self, firing_rate: torch.Tensor, seeds: SeedSlice = None) -> torch.Tensor:
        stacked, batch = firing_rate.shape[0], firing_rate.shape[1]
        booking = self.booking(seeds, stacked)
        if booking is not None:
            self._count(booking, firing_rate, seeds)

        channels = stacked * self.act_dim
        grouped = firing_rate.view(stacked, batch, self.act_dim, self.pop_size).transpose(0, 1)
        weight = _pick(self.weight, seeds).reshape(channels, 1, self.pop_size)
        bias = _pick(self.bias, seeds).reshape(channels)
        out = depthwise_dot(grouped.reshape(batch, channels, self.pop_size), weight, bias)
        return out.view(batch, stacked, self.act_dim).transpose(0, 1)

    @torch.no_grad()
    def _count(self, booking: CountBooking, firing_rate: torch.Tensor, seeds: SeedSlice) -> None:
        stacked, batch = firing_rate.shape[0], firing_rate.shape[1]
        connections = batch * self.act_dim * self.pop_size
        booking.add_shape("mac", connections)
        if not booking.measures_zeros:
            booking.add_shape("shape_effective_mac", connections)
            return
        active = nonzero_indicator(firing_rate.detach(), "dense").view(stacked, batch, -1).sum(1, dtype=torch.float64)
        fanout = nonzero_indicator(_pick(self.weight, seeds).detach(), "dense").reshape(stacked, -1).to(torch.float64)
        booking.add_data("measured_effective_mac", (active * fanout).sum(-1))


class StackedActor(StackedModule):
    """Base of stacked actors: observations [K, B, obs_dim] → actions [K, B, act_dim] in [−1, 1]."""

    obs_dim: int
    act_dim: int
    T: int

    def pre_activation(self, obs: torch.Tensor, seeds: SeedSlice) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, obs: torch.Tensor, seeds: SeedSlice = None) -> torch.Tensor:
        """Return tanh of the pre-activation, as :class:`neurorl.snn.actors.ActorHead` does."""
        expected = self.selected(seeds)
        if obs.dim() != 3 or obs.shape[0] != expected or obs.shape[2] != self.obs_dim:
            raise ValueError(
                f"{type(self).__name__} expects observations of shape [{expected}, batch, {self.obs_dim}] "
                f"for seeds {seeds!r}, got {tuple(obs.shape)}"
            )
        self.book_root(seeds, obs)
        return torch.tanh(self.pre_activation(obs, seeds)[..., : self.act_dim])


class StackedPopSpikingActor(StackedActor):
    """K PopSAN actors (:class:`PopSpikingActor`) with deterministic encoders, stacked."""

    def __init__(self, actors: Sequence[PopSpikingActor]) -> None:
        super().__init__(len(actors))
        _check_same_actors(actors, PopSpikingActor)
        first = actors[0]
        self.obs_dim, self.act_dim, self.T = first.obs_dim, first.act_dim, first.T
        self.encoder = StackedPopulationEncoder([actor.encoder for actor in actors])
        self.layers = nn.ModuleList(
            StackedLinear([actor.layers[i] for actor in actors], "spike") for i in range(len(first.layers))
        )
        self.neurons = nn.ModuleList(
            StackedNeuronLayer([actor.neurons[i] for actor in actors]) for i in range(len(first.neurons))
        )
        self.decoder = StackedPopulationDecoder([actor.decoder for actor in actors])

    def pre_activation(self, obs: torch.Tensor, seeds: SeedSlice) -> torch.Tensor:
        spikes = self.encoder(obs, self.T, seeds)
        stacked, steps, batch = spikes.shape[0], spikes.shape[1], spikes.shape[2]

        for layer, neuron in zip(self.layers, self.neurons):
            currents = layer(spikes.reshape(stacked, steps * batch, -1), seeds).view(stacked, steps, batch, -1)
            spikes = neuron(currents, seeds)

        firing_rate = spikes.mean(dim=1)
        return self.decoder(firing_rate, seeds)


class StackedMLPActor(StackedActor):
    """K ANN actors (:class:`MLPActor`), stacked: ReLU MLP, tanh output."""

    def __init__(self, actors: Sequence[MLPActor]) -> None:
        super().__init__(len(actors))
        _check_same_actors(actors, MLPActor)
        first = actors[0]
        self.obs_dim, self.act_dim, self.T = first.obs_dim, first.act_dim, 1
        linears = [[m for m in actor.net if isinstance(m, nn.Linear)] for actor in actors]
        self.layers = nn.ModuleList(StackedLinear([seed[i] for seed in linears], "dense") for i in range(len(linears[0])))

    def pre_activation(self, obs: torch.Tensor, seeds: SeedSlice) -> torch.Tensor:
        x = obs
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x, seeds)
            if index < last:
                x = F.relu(x)
        return x


def _check_same_actors(actors: Sequence[nn.Module], kind: type) -> None:
    names = [type(actor).__name__ for actor in actors]
    if any(type(actor) is not kind for actor in actors):
        raise ValueError(f"cannot stack {names} as {kind.__name__}: every seed's actor must be exactly a {kind.__name__}")
    if any(actor.gaussian for actor in actors):
        raise ValueError("cannot stack Gaussian (SAC) actor heads; stacked actors are deterministic TD3 actors")
    shapes = {(actor.obs_dim, actor.act_dim, actor.T, tuple(p.shape for p in actor.parameters())) for actor in actors}
    if len(shapes) != 1:
        raise ValueError("cannot stack actors of different sizes or T; build every seed's actor from one ActorSpec")


STACKABLE_ACTORS: dict[type, type[StackedActor]] = {
    PopSpikingActor: StackedPopSpikingActor,
    MLPActor: StackedMLPActor,
}


def stack_actor(actors: Sequence[nn.Module]) -> StackedActor:
    """Stack K seeds' actors (all PopSAN or all ANN) into one batched actor.

    :raises ValueError: for an empty list, mixed or unsupported actor classes, Gaussian heads or
        unequal sizes.
    :raises NotImplementedError: for PopSAN with a Bernoulli encoder.
    """
    if not actors:
        raise ValueError("stack_actor needs at least one actor, got none")
    kind = type(actors[0])
    if kind not in STACKABLE_ACTORS:
        supported = ", ".join(cls.__name__ for cls in STACKABLE_ACTORS)
        raise ValueError(f"cannot stack {kind.__name__} actors; stacked actors exist for {supported}")
    return STACKABLE_ACTORS[kind](actors)
