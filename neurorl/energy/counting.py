"""Per-layer AC, MAC and neuron-update counts of every forward pass, from forward wrappers.

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
  counted neuron (Bernoulli sampling) books one update per output element under its own name.
* Biases are never counted.

How it counts. Every counted module, the roots included, gets a wrapper of its ``forward`` (an
instance attribute, removed by ``remove``), because torch 2.13 runs a module that has hooks
through a slower dispatch path. A module that already has an instance-level ``forward`` (another
live counter's wrapper) gets forward hooks instead. Outside ``OperationCounter.phase(...)`` a
wrapper only tests the phase stack and calls the class's forward. Inside, it counts the usual
calls inline and adds the time of that work to ``OperationCounter.seconds``.

A call of a synaptic layer adds its input's non-zero indicator to a per-layer accumulator, in
place: elementwise for inputs of at most 4096 elements (the batch-1 calls of acting), as one sum
for larger spike inputs of a Linear layer whose weight has no zero (every input then has the same
fan-out), else as column sums with one ``addmm_`` against a cached ones row. A spike input is its
own indicator.
A dense input first goes through a zero indicator (two elementwise operations), except that a
dense CPU input of at most 128 elements is counted on the host from one ``tolist``. The
accumulator is multiplied by the fan-out only when the fan-out changes or the counts are read.
The fan-out is taken once per version of the weight: when its version counter moves, and after
every ``torch.optim`` step that updated it (a fused step leaves the version counter unchanged).
Dense layers in a phase that does not count zeros cost shape arithmetic only, and a plain
``nn.Sequential`` of dense Linear layers and activations (an MLP critic) books all its layers at
once there. Nothing is copied from a layer and no activation is kept across calls. Counts stay
on the input's device and are read once per ``take``, so counting on a GPU adds no host
synchronisation per call (except for layers without ``input_kind`` and for the zero-free test of
CPU weights).

NOTE: a weight changed through ``.data`` or by a kernel outside ``torch.optim`` keeps its version
counter, so the fan-out is not taken again before the next ``torch.optim`` step or in-place
change. That matters only when such a change creates or removes exact zero weights.

NOTE: the device-side accumulation is written for CUDA tensors, but the tests and benchmarks have
only run on CPU.
"""

from __future__ import annotations

import itertools
import math
import types
import weakref
from time import perf_counter
from typing import Any, Callable, Collection, Sequence

import torch
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks
from torch.optim.optimizer import register_optimizer_step_post_hook

from neurorl.energy.counts import OperationCounts
from neurorl.energy.discovery import INPUT_KINDS, dense_chain, is_one_to_one, plan_module, validate_roots
from neurorl.energy.synapses import (
    FLOAT32_EXACT_ROWS,
    conv_connections,
    detect_kind,
    kernel_covers_input,
    layer_fanout,
    nan_probe,
    pending_values,
    spike_check,
)

PHASES = ("acting", "learning", "replay")
SPIKE_CHECK_CALLS = 16
EFFECTIVE_MAC_PHASES = ("acting", "replay")

# Input dtypes that the accumulators take as they are (addmm_ needs one dtype for all operands).
_ACCUMULATED_DTYPES = (torch.float32, torch.float64)
# Encoder inputs are summed scaled by 2**-100, so a finite float32 input (|x| < 2**128) adds at
# most 2**28 per element and the sum cannot overflow, while NaN and ±inf still propagate.
_PROBE_SCALE = 2.0**-100
# Dense CPU inputs up to this many elements are counted on the host from one tolist. On such
# inputs the two to four tensor operations of the accumulator path cost more, and several times
# more next to a oneDNN convolution such as the population decoder's (torch 2.13 on CPU).
_HOST_COUNT_ELEMENTS = 128
# Calls of at most this many input elements are accumulated elementwise (see _Accumulator): at
# that size one elementwise addition costs less than the matrix product of a column sum.
_ELEMENTWISE_ELEMENTS = 4096
# Calls whose sums a total keeps apart before adding them to its float64 sum.
_TOTAL_SLOTS = 64
# Accumulator group of dense inputs, whose accumulator counts zeros (see _dense_zeros).
_DENSE_ZEROS = "dense_zeros"
_VALUE_KIND = {"spike": "spike", "signed": "spike", _DENSE_ZEROS: "dense"}

__all__ = ["INPUT_KINDS", "PHASES", "OperationCounter", "OperationCounts", "count_operations"]

HostValues = dict[str, list[float]]


class _Accumulator:
    """Counts of a layer's input indicators since the last flush, updated in place.

    Three layouts, fixed at creation. For calls of at most ``_ELEMENTWISE_ELEMENTS`` input elements
    ``values`` has the input's shape [rows, features] and each call adds its input elementwise
    (one cheap operation; the rows are summed when the counts are read). A ``total`` accumulator
    (spike input of a Linear layer whose weight has no zero, so that every input has the same
    fan-out) keeps one float64 sum. Each call writes its input's sum into the next of 64 slots (one
    reduction), and full slots are added to that sum. Otherwise
    ``values`` has the per-sample shape ``shape`` ([features], or [C, *spatial] for a convolution)
    and each call adds its column sums with one matrix product, ones[1, rows] @ matrix[rows, features].
    ``values`` is kept across flushes and takes (:meth:`clear` zeroes it). It is created outside
    inference mode, so that it can be updated in place both inside and outside
    ``torch.inference_mode``. Every row enters multiplied by ``scale``.
    """

    __slots__ = (
        "values", "row", "shape", "dtype", "device", "is_cpu", "rows", "max_rows", "scale", "ones", "ones_rows",
        "counts_zeros", "elementwise", "total", "input_shape", "room", "partials", "slots", "filled",
    )

    def __init__(
        self,
        shape: torch.Size,
        dtype: torch.dtype,
        device: torch.device,
        scale: float,
        counts_zeros: bool,
        call_rows: int,
        total: bool = False,
    ) -> None:
        # call_rows > 0 selects the elementwise layout for calls of exactly that many rows.
        self.elementwise = call_rows > 0
        self.total = total and not self.elementwise and scale == 1.0 and not counts_zeros
        width = shape.numel()
        with torch.inference_mode(False):
            if self.total:
                self.values = torch.zeros(1, dtype=torch.float64, device=device)
                self.partials = torch.zeros(_TOTAL_SLOTS, dtype=dtype, device=device)
            else:
                self.values = torch.zeros((call_rows, width) if self.elementwise else shape, dtype=dtype, device=device)
                self.partials = torch.empty(0)
        self.slots = self.partials.unbind()
        self.filled = 0
        self.row = self.values.view(1, -1)
        self.shape, self.dtype, self.device, self.is_cpu = shape, dtype, self.values.device, self.values.is_cpu
        self.rows = 0
        # Read from the module at creation, so a test can lower the limit. Each element of an
        # elementwise accumulator counts at most one per call, so the limit holds for it too. A
        # total adds one call's float32 sum, exact while that call has at most 2**24 elements.
        self.max_rows = FLOAT32_EXACT_ROWS if dtype == torch.float32 else 2**53
        if self.total and dtype == torch.float32:
            self.max_rows = max(1, FLOAT32_EXACT_ROWS // max(1, width))
        self.scale = scale
        self.ones = torch.empty(0)
        # Rows of the calls that the wrapper's inlined path may add: input_shape is their matrix
        # shape, and room the most rows the accumulator may hold before taking one more.
        self.ones_rows = call_rows if self.elementwise else -1
        self.input_shape = torch.Size((call_rows, width)) if self.elementwise else torch.Size()
        self.room = self.max_rows - call_rows if self.elementwise else -1
        if self.total:
            # A total stays exact for any number of calls (see takes), so the inlined path needs no limit.
            self.room = 2**62
        # Dense inputs enter as zero indicators, so ``values`` counts zeros.
        self.counts_zeros = counts_zeros

    def takes(self, x: torch.Tensor, rows: int) -> bool:
        """Return whether ``rows`` more rows of ``x`` (of this dtype and device) can be added exactly."""
        same_device = (self.is_cpu and x.is_cpu) or self.device == x.device
        if self.total:
            # Each call's float32 sum must be exact. The float64 total then stays exact up to 2**53.
            fits = rows <= self.max_rows
        else:
            fits = self.rows + rows <= self.max_rows and (rows == self.ones_rows if self.elementwise else True)
        return fits and self.dtype is x.dtype and same_device

    def add(self, matrix: torch.Tensor) -> None:
        """Add ``matrix`` [rows, features]: elementwise, as its sum, or its column sums with one matrix product."""
        rows = matrix.shape[0]
        if not rows:
            return
        if self.elementwise:
            self.values.add_(matrix)
            self.rows += rows
            return
        if self.total:
            self.add_total(matrix)
            self.input_shape = matrix.shape
            self.ones_rows = rows
            self.rows += rows
            return
        if self.ones_rows != rows:
            with torch.inference_mode(False):
                self.ones = torch.full((1, rows), self.scale, dtype=self.dtype, device=self.device)
            self.ones_rows = rows
            self.room = self.max_rows - rows
        self.input_shape = matrix.shape
        self.row.addmm_(self.ones, matrix)
        self.rows += rows

    def add_total(self, matrix: torch.Tensor) -> None:
        """Write the sum of a 2-D ``matrix`` into the next slot of a total, folding the slots when they are full."""
        torch.sum(matrix, (0, 1), out=self.slots[self.filled])
        self.filled += 1
        if self.filled == _TOTAL_SLOTS:
            self.fold()

    def fold(self) -> None:
        """Add the filled slots of a total to its float64 sum."""
        if self.filled:
            self.values.add_(self.partials[: self.filled].sum(dtype=torch.float64))
            self.filled = 0

    def clear(self) -> None:
        """Empty the accumulator for reuse."""
        if self.rows:
            self.values.zero_()
            self.rows = 0
            self.filled = 0

    def nonzero_values(self) -> torch.Tensor:
        """Return the non-zero counts per input feature (and position), of shape ``shape``."""
        if self.total:
            self.fold()
        values = self.values.sum(0, dtype=torch.float64).view(self.shape) if self.elementwise else self.values
        return self.rows - values if self.counts_zeros else values


class _Tally:
    """Counts of one counted module in one phase since the last take.

    Python integers count what shapes give. Data-dependent counts stay on the input's device:
    ``accumulators`` (per group, not yet multiplied by the fan-out), ``sums`` (per value kind,
    float64 [ops, non-zero inputs]), the spike check (summed binary ``gap`` and running max of
    [−min, max]) and the encoders' NaN probe.
    """

    __slots__ = (
        "calls", "rows", "mac", "ac_connections", "spike_slots", "dense_slots", "neuron_updates", "unmeasured_mac",
        "out_units", "spike_kind", "accumulators", "sums", "gap", "extremes", "probe", "probe_rows",
        "spike_rows", "dense_rows", "shape_rows", "host_dense", "nonfinite",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.mac = 0
        self.ac_connections = 0
        self.spike_slots = 0
        self.dense_slots = 0
        self.neuron_updates = 0
        # MACs of dense calls in phases without zero counting, booked as effective MACs too.
        self.unmeasured_mac = 0
        self.out_units: int | None = None
        self.spike_kind = "spike"
        self.accumulators: dict[str, _Accumulator] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.gap: torch.Tensor | None = None
        self.extremes: torch.Tensor | None = None
        self.probe: torch.Tensor | None = None
        self.probe_rows: _Accumulator | None = None
        # Rows of a Linear layer's steady-state spike, dense and shape-only calls. Their
        # connections and input slots follow from the layer's sizes, so :meth:`settle` books
        # them once per read instead of at every call.
        self.spike_rows = 0
        self.dense_rows = 0
        self.shape_rows = 0
        # [ops, non-zero inputs] of dense calls counted on the host (NaN after a NaN input).
        self.host_dense: list[float] | None = None
        # Whether an encoder input checked on the host was NaN or infinite.
        self.nonfinite = False

    def settle(self, layer: nn.Linear) -> None:
        """Book the rows counted by the Linear steady-state path into the row, connection and slot totals."""
        spike, dense, shape = self.spike_rows, self.dense_rows, self.shape_rows
        if not spike + dense + shape:
            return
        in_features, out_features = layer.in_features, layer.out_features
        self.rows += spike + dense + shape
        self.ac_connections += spike * in_features * out_features
        self.spike_slots += spike * in_features
        self.mac += (dense + shape) * in_features * out_features
        self.unmeasured_mac += shape * in_features * out_features
        self.dense_slots += (dense + shape) * in_features
        self.out_units = out_features
        self.spike_rows = self.dense_rows = self.shape_rows = 0

    def add_sums(self, kind: str, values: torch.Tensor) -> None:
        # Replaced, never updated in place: a tensor made under torch.inference_mode cannot be
        # updated in place outside it.
        previous = self.sums.get(kind)
        self.sums[kind] = values if previous is None else previous.to(values.device) + values

    def add_check(self, gap: torch.Tensor, extremes: torch.Tensor) -> None:
        self.gap = gap if self.gap is None else self.gap.to(gap.device) + gap
        self.extremes = extremes if self.extremes is None else torch.maximum(self.extremes.to(extremes.device), extremes)

    def add_probe(self, probe: torch.Tensor) -> None:
        self.probe = probe if self.probe is None else self.probe.to(probe.device) + probe

    def device_values(self, site: _Site) -> list[tuple[str, torch.Tensor]]:
        """Return (key, 1-D tensor) pairs of every device-side count, without changing the tally."""
        parts = [
            (_VALUE_KIND[group], pending_values(site.module, accumulator.nonzero_values(), site.fanout))
            for group, accumulator in self.accumulators.items()
            if accumulator.rows
        ]
        parts.extend(self.sums.items())
        for key, tensor in (("gap", self.gap), ("extremes", self.extremes), ("probe", self.probe)):
            if tensor is not None:
                parts.append((key, tensor.reshape(-1)))
        if self.probe_rows is not None and self.probe_rows.rows:
            parts.append(("probe_rows", self.probe_rows.values))
        return parts


class _Site:
    """One module the counter watches: name, role, declared input kind, per-phase tallies and fan-out state."""

    def __init__(self, name: str, module: nn.Module, role: str, kind: str | None, spike_checks: int | None) -> None:
        self.name = name
        self.module = module
        self.role = role
        self.kind = kind
        self.tallies = [_Tally() for _ in PHASES]
        # Linear layers, per phase: the accumulator the wrapper's inlined path adds to, or None
        # while the next call must take the full path.
        self.ready: list[_Accumulator | None] = [None] * len(PHASES)
        # Accumulators per (phase index, group), kept when a take replaces the tallies.
        self.buffers: dict[tuple[int, str], _Accumulator] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        # The bound forward wrapper set on the module, when it has one instead of hooks.
        self.wrapper: types.MethodType | None = None
        self.neuron_calls_before = 0
        self.spike_checks_left = spike_checks
        # Whether a declared Linear layer may take the steady-state path: dense input, or spikes
        # past the spike checks.
        self.fast = kind == "dense" or (kind == "spike" and spike_checks == 0)
        self.neuron_model = getattr(module, "neuron_model", None) or type(module).__name__
        # Connections and output units per sample, for the last per-sample input shape.
        self.sample_shape: torch.Size | None = None
        self.per_sample = (0, 0)
        # Whether one output position of a convolution reads every input of that shape once.
        self.covers = False
        self.one_to_one = is_one_to_one(module)
        self.encoder_units = int(module.obs_dim) * int(module.pop_size) if role == "encoder" else 0
        self.connections: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
        # Fan-out of the weight version the accumulated counts were taken with. The weight
        # reference keeps its id and storage from being reused while it is the key.
        self.fanout: torch.Tensor | float = 0.0
        self.weight: Any = None
        self.weight_version = -1
        self.weight_pointer = -1

    def take_spike_check(self) -> bool:
        if self.spike_checks_left is None:
            return True
        if self.spike_checks_left <= 0:
            return False
        self.spike_checks_left -= 1
        self.fast = self.kind == "spike" and self.spike_checks_left == 0
        return True

    def as_matrix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """Return the input as [rows, features] and its per-sample shape; raise on a mismatching input."""
        module = self.module
        if isinstance(module, nn.Linear):
            if x.dim() == 0 or x.shape[-1] != module.in_features:
                raise ValueError(f"input of shape {tuple(x.shape)} does not match in_features={module.in_features} of {module}")
            return x.reshape(-1, module.in_features), x.shape[-1:]
        if isinstance(module, nn.modules.conv._ConvNd):
            spatial_dims = len(module.kernel_size)
            if x.dim() not in (spatial_dims + 1, spatial_dims + 2):
                raise ValueError(f"input of shape {tuple(x.shape)} has the wrong rank for {module}")
            if x.shape[-spatial_dims - 1] != module.in_channels:
                raise ValueError(f"input of shape {tuple(x.shape)} does not match in_channels={module.in_channels} of {module}")
            if x.dim() == spatial_dims + 2:
                return x.reshape(x.shape[0], -1), x.shape[1:]
            return x.reshape(1, -1), x.shape
        width = x.shape[-1] if x.dim() else 1
        return x.reshape(-1, width), torch.Size((width,))

    def per_sample_counts(self, sample_shape: torch.Size) -> tuple[int, int]:
        """Return (connections, output units) per sample for one per-sample input shape."""
        if sample_shape != self.sample_shape:
            module = self.module
            if isinstance(module, nn.Linear):
                self.per_sample = (module.in_features * module.out_features, module.out_features)
            elif isinstance(module, nn.modules.conv._ConvNd):
                self.per_sample = conv_connections(module, tuple(sample_shape), self.connections)
                self.covers = kernel_covers_input(module, sample_shape[1:])
            else:
                self.per_sample = (sample_shape[0], sample_shape[0])
            self.sample_shape = sample_shape
        return self.per_sample

    def current_weight(self) -> Any:
        module = self.module
        if self.one_to_one:
            return module.V
        # A parametrised layer computes its weight, which is then not in _parameters.
        weight = module._parameters.get("weight")
        return module.weight if weight is None else weight

    def refresh_fanout(self, weight: Any) -> None:
        """Take the fan-out of ``weight``; counts taken with another fan-out are multiplied by it first.

        A new version of the weight is checked once. An in-place change bumps the version, and
        the optimizer step hook (:func:`_optimizer_stepped`) marks weights that an optimizer stepped,
        because a fused step (``torch.optim.Adam(fused=True)``, torch 2.13) leaves it as it was.
        """
        if isinstance(weight, torch.Tensor):
            version, pointer = weight._version, weight.data_ptr()
            if weight is self.weight and version == self.weight_version and pointer == self.weight_pointer:
                return
        else:
            version = pointer = -1
        if weight is not self.weight:
            _LAYOUT_EPOCH[0] += 1
        fanout = layer_fanout(self.module, weight)
        unchanged = isinstance(fanout, float) and isinstance(self.fanout, float) and fanout == self.fanout
        if not unchanged:
            self.flush()
            self.fanout = fanout
            # A total accumulator is only right for a float fan-out, so every phase's next
            # call goes through the full path, which picks the layout for the new fan-out.
            self.ready[:] = [None] * len(self.ready)
        self.weight, self.weight_version, self.weight_pointer = weight, version, pointer

    def flush(self) -> None:
        """Multiply every pending accumulator by the current fan-out into its tally's sums."""
        for record in self.tallies:
            for group, accumulator in record.accumulators.items():
                if accumulator.rows:
                    values = pending_values(self.module, accumulator.nonzero_values(), self.fanout)
                    record.add_sums(_VALUE_KIND[group], values)
                    accumulator.clear()

    def totals(self, group: str, elements: int) -> bool:
        """Return whether calls of ``elements`` inputs of ``group`` are summed to one total.

        That is a spike input of a Linear layer with a float fan-out, too large for the elementwise
        layout and small enough for an exact float32 sum.
        """
        large = _ELEMENTWISE_ELEMENTS < elements <= FLOAT32_EXACT_ROWS
        return large and group == "spike" and isinstance(self.fanout, float) and isinstance(self.module, nn.Linear)

    def accumulator(self, record: _Tally, phase: int, group: str, x: torch.Tensor, sample_shape: torch.Size, rows: int) -> _Accumulator:
        """Return the accumulator of ``group`` ready to take ``rows`` more rows like ``x``.

        One of another shape, dtype or device, or one that could lose exactness, is flushed first
        and replaced by the kept buffer of (``phase``, ``group``) or a new one.
        """
        accumulator = record.accumulators.get(group)
        total = self.totals(group, rows * sample_shape.numel())
        matches = accumulator is not None and accumulator.shape == sample_shape and accumulator.total == total
        if matches and accumulator.takes(x, rows):
            return accumulator
        if accumulator is not None and accumulator.rows:
            record.add_sums(_VALUE_KIND[group], pending_values(self.module, accumulator.nonzero_values(), self.fanout))
        accumulator = self.buffer(phase, group, sample_shape, x.dtype, x.device, rows=rows)
        record.accumulators[group] = accumulator
        return accumulator

    def buffer(
        self, phase: int, group: str, shape: torch.Size, dtype: torch.dtype, device: torch.device, scale: float = 1.0, rows: int = 0
    ) -> _Accumulator:
        """Return the kept accumulator of (``phase``, ``group``), emptied, or a new one when it does not match.

        Calls of ``rows`` rows of at most ``_ELEMENTWISE_ELEMENTS`` elements get the elementwise layout.
        """
        call_rows = rows if scale == 1.0 and 0 < rows * shape.numel() <= _ELEMENTWISE_ELEMENTS else 0
        total = scale == 1.0 and self.totals(group, rows * shape.numel())
        accumulator = self.buffers.get((phase, group))
        matches = accumulator is not None and accumulator.shape == shape and accumulator.dtype == dtype
        if matches:
            matches = accumulator.device == device and accumulator.elementwise == (call_rows > 0) and accumulator.total == total
            matches = matches and (not call_rows or accumulator.ones_rows == call_rows)
        if not matches:
            accumulator = _Accumulator(shape, dtype, device, scale, group == _DENSE_ZEROS, call_rows, total)
            self.buffers[(phase, group)] = accumulator
        accumulator.clear()
        return accumulator


class _PhaseScope:
    """Context manager of :meth:`OperationCounter.phase` (a class, cheaper per use than a generator)."""

    __slots__ = ("_counter", "_index")

    def __init__(self, counter: OperationCounter, index: int) -> None:
        self._counter = counter
        self._index = index

    def __enter__(self) -> OperationCounter:
        if self._counter._removed:
            raise RuntimeError("this OperationCounter's wrappers were removed. Create a new counter to count again")
        self._counter._stack.append(self._index)
        return self._counter

    def __exit__(self, *exc_info: object) -> None:
        self._counter._stack.pop()


class OperationCounter:
    """Count ACs, MACs and neuron updates of every forward pass through the given modules.

    Every root module, synaptic layer (``nn.Linear``, ``nn.Conv1d/2d/3d``, snnTorch's
    ``RecurrentOneToOne``), neuron population and population encoder inside ``modules`` gets a
    wrapper of its ``forward`` at creation. The wrappers count only inside :meth:`phase` and call
    the module's forward at once outside it. A direct call of a wrapped module's ``forward`` is
    counted too. A deep copy of a counted module computes with its own weights and is not
    counted. Counting uses detached inputs and keeps no activations: per layer and phase it keeps
    a few counters and, for synaptic layers, one accumulator of per-input non-zero counts.

    :param modules: root modules, for example the actor and the critics. None may contain another.
    :param spike_check_calls: how many calls of each layer declared ``input_kind = "spike"`` are
        verified to carry only values in {0, 1} ({−1, 0, 1} with ``signed_spikes = True``); a
        violation raises at :meth:`take`. ``None`` verifies every call, 0 none. A layer's input
        kind is fixed by the architecture, so the first calls catch a wrong declaration; NaN
        inputs of spike-fed layers are detected at every call regardless.
    :param effective_mac_phases: phases in which dense-fed layers count their zero inputs
        (``effective_mac``) and detect NaN inputs, and population encoders detect NaN and ±inf
        observations. That costs three passes over every dense input (a zero indicator in two
        elementwise operations, then a column sum). So by default the ``learning`` phase skips
        it. There, dense layers and encoders cost nothing per call beyond shape arithmetic, and
        the dense layers' ``effective_mac`` is booked equal to ``mac`` (no zero skipping
        assumed).

    ``seconds`` is the wall time in seconds spent counting since construction: inside the
    wrappers (without the wrapped forward) and in :meth:`take`, :meth:`peek` and
    :meth:`layer_counts`.

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
        self.seconds = 0.0
        # Per phase index: whether dense layers are counted from shapes alone.
        self._shape_only = tuple(phase not in self.effective_mac_phases for phase in PHASES)
        # Indices into PHASES of the open phases, innermost last. A scope keeps no state of its
        # own, so one per phase serves every (nested) use.
        self._stack: list[int] = []
        self._scopes = {phase: _PhaseScope(self, index) for index, phase in enumerate(PHASES)}
        self._neuron_calls = 0
        self._sites: list[_Site] = []
        self._removed = False
        self._register(modules)
        self._weighted = [site for site in self._sites if site.role == "synapse"]
        _watch_optimizers(self)

    # ----------------------------------------------------------------------------- public API

    @property
    def active_phase(self) -> str | None:
        """Phase whose operations are being counted, or None outside every phase."""
        return PHASES[self._stack[-1]] if self._stack else None

    def phase(self, name: str) -> _PhaseScope:
        """Return a context manager that counts forward passes inside its ``with`` block as phase ``name``.

        Phases nest: an inner phase counts until it exits, then the outer one resumes. Raises
        ValueError for an unknown phase, and entering raises RuntimeError after :meth:`remove`.
        """
        scope = self._scopes.get(name)
        return scope if scope is not None else _PhaseScope(self, _phase_index(name))

    def take(self, phase: str) -> OperationCounts:
        """Return the counts accumulated in ``phase`` since the last take, and reset them.

        :raises ValueError: when a layer received NaN inputs, or a layer declared
            ``input_kind = "spike"`` received non-spike values, during the phase. The phase is
            reset before raising.
        """
        start = perf_counter()
        try:
            items = self._read(_phase_index(phase), reset=True)
            _raise_on_invalid(items, phase)
            return _sum_items(items)
        finally:
            self.seconds += perf_counter() - start

    def peek(self, phase: str) -> OperationCounts:
        """Return the counts accumulated in ``phase`` without resetting them."""
        start = perf_counter()
        try:
            items = self._read(_phase_index(phase))
            _raise_on_invalid(items, phase)
            return _sum_items(items)
        finally:
            self.seconds += perf_counter() - start

    def layer_counts(self, phase: str) -> list[dict[str, Any]]:
        """Return per-module totals of ``phase`` (not reset) for every module called in it.

        Each dict has ``name``, ``kind`` ("spike", "dense", "mixed", "encoder" or "neuron"),
        ``role``, ``neuron_model``, ``calls``, ``rows``, ``ac``, ``mac``, ``effective_mac``,
        ``ac_connections``, ``neuron_updates``, ``nonzero_inputs``, ``spike_inputs``,
        ``spike_input_slots``, ``input_elements`` and ``out_units``.
        """
        start = perf_counter()
        try:
            items = self._read(_phase_index(phase))
            _raise_on_invalid(items, phase)
            return [_report(*item) for item in items if item[0].role != "root"]
        finally:
            self.seconds += perf_counter() - start

    def reset(self) -> None:
        """Discard the counts of every phase."""
        for site in self._sites:
            for phase in range(len(PHASES)):
                site.tallies[phase] = _Tally()
                site.ready[phase] = None

    def remove(self) -> None:
        """Remove every wrapper and hook this counter installed. The counter cannot count again afterwards.

        A ``forward`` attribute that other code set on a module after this counter wrapped it is
        left in place.
        """
        for site in self._sites:
            for handle in site.handles:
                handle.remove()
            site.handles.clear()
            if site.wrapper is not None and vars(site.module).get("forward") is site.wrapper:
                del vars(site.module)["forward"]
            site.wrapper = None
            site.weight = None
        _unwatch_optimizers(self)
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
            self._attach(_Site(f"{index}:{type(root).__name__}", root, "root", None, None))
        for name, module, role, kind in plan:
            self._attach(_Site(name, module, role, kind, self.spike_check_calls))
        self._attach_chains(roots)

    def _attach_chains(self, roots: Sequence[nn.Module]) -> None:
        """Wrap every dense chain (see :func:`dense_chain`) whose Linear layers this counter wraps.

        In a phase that counts dense layers from shapes alone, the chain's wrapper books the
        rows of all its Linear layers at once, and their own wrappers only compute.
        """
        wrapped = {id(site.module): site for site in self._sites if site.wrapper is not None}
        for root in roots:
            for name, module in root.named_modules():
                layers = dense_chain(module)
                if layers is None or "forward" in vars(module):
                    continue
                sites = [wrapped.get(id(layer)) for layer in layers]
                if any(site is None for site in sites):
                    continue
                chain = _Site(name or type(root).__name__, module, "chain", None, None)
                self._sites.append(chain)
                chain.wrapper = types.MethodType(self._chain_wrapper(chain, sites), module)
                module.forward = chain.wrapper

    def _attach(self, site: _Site) -> None:
        """Wrap the module's forward with the counter of its role, or hook it when it has an instance-level forward.

        An instance-level forward is another live counter's wrapper, or one that other code set.
        Hooks run the same counting as the wrappers, through torch's slower hook dispatch.
        """
        self._sites.append(site)
        module = site.module
        if "forward" in vars(module):
            self._hook(site)
            return
        if site.role == "root":
            forward = self._root_wrapper(site)
        elif site.role == "neuron":
            forward = self._neuron_wrapper(site)
        elif site.role == "encoder":
            forward = self._encoder_wrapper(site)
        elif isinstance(module, nn.Linear):
            forward = self._linear_wrapper(site)
        elif isinstance(module, nn.modules.conv._ConvNd):
            forward = self._conv_wrapper(site)
        else:
            forward = self._synapse_wrapper(site)
        site.wrapper = types.MethodType(forward, module)
        module.forward = site.wrapper

    def _hook(self, site: _Site) -> None:
        counter, counted, stack = self, site.module, self._stack
        before = {"root": _count_root, "synapse": self._count_synapse, "encoder": self._start_encoder}.get(site.role)
        after = {"neuron": self._count_neuron, "encoder": self._count_encoder}.get(site.role)
        # A deep copy of the module carries these hooks too, and they do not count its calls.
        if before is not None:

            def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if stack and module is counted:
                    start = perf_counter()
                    before(site, site.tallies[stack[-1]], stack[-1], args, kwargs)
                    counter.seconds += perf_counter() - start

            site.handles.append(counted.register_forward_pre_hook(pre_hook, with_kwargs=True))
        if after is not None:

            def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
                if stack and module is counted:
                    start = perf_counter()
                    after(site, site.tallies[stack[-1]], stack[-1], args, kwargs, output)
                    counter.seconds += perf_counter() - start

            site.handles.append(counted.register_forward_hook(hook, with_kwargs=True))

    # ----------------------------------------------------------------------------- wrappers

    # A wrapper runs at every call of its module. Outside a phase, and for a deep copy of the
    # module (which carries the wrapper bound to the copy), it only calls the class's forward.
    # Inside a phase it counts the usual calls inline, because every Python call and attribute
    # lookup per forward pass shows in the training time. Each times its counting work alone.

    def _root_wrapper(self, site: _Site) -> Callable:
        counter, stack, tallies, root = self, self._stack, site.tallies, site.module
        class_forward = type(root).forward

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if stack and self_ is root:
                start = perf_counter()
                record = tallies[stack[-1]]
                record.calls += 1
                first = args[0] if args else None
                if type(first) is torch.Tensor:
                    record.rows += first.shape[0] if first.dim() > 1 else 1
                else:
                    record.rows += _leading_rows(args, kwargs)
                counter.seconds += perf_counter() - start
            return class_forward(self_, *args, **kwargs)

        return forward

    def _neuron_wrapper(self, site: _Site) -> Callable:
        counter, stack, tallies, neuron = self, self._stack, site.tallies, site.module
        class_forward = type(neuron).forward

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            output = class_forward(self_, *args, **kwargs)
            if stack and self_ is neuron:
                start = perf_counter()
                counter._neuron_calls += 1
                record = tallies[stack[-1]]
                record.calls += 1
                spikes = output if type(output) is torch.Tensor else _first_tensor(output)
                if spikes is not None:
                    record.neuron_updates += spikes.numel()
                counter.seconds += perf_counter() - start
            return output

        return forward

    def _encoder_wrapper(self, site: _Site) -> Callable:
        """Return the wrapper of a population encoder, with a small CPU observation batch counted inline.

        That call (the acting batch) books its MACs from the shape and tests the observations for
        NaN and ±inf on the host. Its spikes come from a counted neuron, which books their updates.
        Every other call takes :meth:`_count_encoder`.
        """
        counter, stack, tallies, encoder, count = self, self._stack, site.tallies, site.module, self._count_encoder
        class_forward = type(encoder).forward
        units = site.encoder_units

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not stack or self_ is not encoder:
                return class_forward(self_, *args, **kwargs)
            calls_before = site.neuron_calls_before = counter._neuron_calls
            output = class_forward(self_, *args, **kwargs)
            start = perf_counter()
            record = tallies[stack[-1]]
            x = args[0] if args else None
            if (
                type(x) is torch.Tensor
                and x.dim() == 2
                and x.is_cpu
                and x.numel() <= _HOST_COUNT_ELEMENTS
                and counter._neuron_calls != calls_before
            ):
                rows = x.shape[0]
                record.calls += 1
                record.rows += rows
                record.out_units = units
                record.mac += rows * units
                values = x.tolist()
                # A float64 sum of finite float32 values is finite, so only a non-finite sum needs each value tested.
                if not math.isfinite(sum(map(sum, values))) and not all(math.isfinite(v) for row in values for v in row):
                    record.nonfinite = True
            else:
                count(site, record, stack[-1], args, kwargs, output)
            counter.seconds += perf_counter() - start
            return output

        return forward

    def _synapse_wrapper(self, site: _Site) -> Callable:
        counter, stack, tallies, layer, count = self, self._stack, site.tallies, site.module, self._count_synapse
        class_forward = type(layer).forward

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if stack and self_ is layer:
                start = perf_counter()
                count(site, tallies[stack[-1]], stack[-1], args, kwargs)
                counter.seconds += perf_counter() - start
            return class_forward(self_, *args, **kwargs)

        return forward

    def _chain_wrapper(self, chain: _Site, layers: list[_Site]) -> Callable:
        counter, stack, module, shape_only = self, self._stack, chain.module, self._shape_only
        class_forward = type(module).forward
        # Torch updates these hook dictionaries in place, so their truth value at each call shows
        # whether any forward hook could change what the chain computes.
        hooks = (_global_forward_pre_hooks, _global_forward_hooks)
        hooks += tuple(hooks for child in module for hooks in (child._forward_pre_hooks, child._forward_hooks))
        in_features = layers[0].module.in_features

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not stack or self_ is not module or not shape_only[stack[-1]]:
                return class_forward(self_, *args, **kwargs)
            x = args[0] if len(args) == 1 and not kwargs else None
            if type(x) is not torch.Tensor or not x.dim() or x.shape[-1] != in_features or any(hooks):
                return class_forward(self_, *args, **kwargs)
            start = perf_counter()
            phase = stack[-1]
            rows = x.numel() // in_features if in_features else 0
            for layer in layers:
                record = layer.tallies[phase]
                record.calls += 1
                record.shape_rows += rows
            # The chain's layers see no open phase, so their wrappers only compute.
            saved = stack[:]
            stack.clear()
            counter.seconds += perf_counter() - start
            try:
                return class_forward(self_, *args, **kwargs)
            finally:
                stack[:] = saved

        return forward

    def _linear_wrapper(self, site: _Site) -> Callable:
        """Return the wrapper of a Linear layer, with the steady-state calls of a training run inlined.

        Those calls are a declared spike layer past its spike checks, or a declared dense layer,
        fed a [rows, in] input of the previous call's shape, dtype and device while the weight
        keeps its fan-out. They cost a few attribute reads and one in-place operation (two more
        elementwise operations for the zero indicator of dense input), and a new weight version
        adds one zero-free test (:meth:`_Site.refresh_fanout`). A dense layer in a
        phase that counts shapes only costs two additions. Every other call takes
        :meth:`_count_linear`, which also prepares the inlined path for the next call.
        """
        counter, stack, tallies, ready, layer, count = self, self._stack, site.tallies, site.ready, site.module, self._count_linear
        class_forward = type(layer).forward
        in_features, parameters = layer.in_features, layer._parameters
        dense = site.kind == "dense"
        shape_only_dense = tuple(dense and shape_only for shape_only in self._shape_only)

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not stack or self_ is not layer:
                return class_forward(self_, *args, **kwargs)
            start = perf_counter()
            phase = stack[-1]
            record = tallies[phase]
            accumulator = ready[phase]
            x = args[0] if args else None
            weight = parameters.get("weight")
            if (
                accumulator is None
                or type(x) is not torch.Tensor
                or x.shape != accumulator.input_shape
                or accumulator.rows > accumulator.room
            ):
                accumulator = None
            elif weight is not site.weight or weight._version != site.weight_version or weight.data_ptr() != site.weight_pointer:
                # A new weight version (after every optimizer step) stays on this path while its
                # fan-out is unchanged. refresh_fanout clears ``ready`` when the fan-out changes.
                if isinstance(weight, torch.Tensor):
                    site.refresh_fanout(weight)
                    accumulator = ready[phase]
                else:
                    accumulator = None
            if accumulator is not None:
                rows = accumulator.ones_rows
                if x.requires_grad:
                    x = x.detach()
                if dense:
                    x = _dense_zeros(x)
                try:
                    # Another dtype or device raises here, so it needs no test in the common case.
                    # The sum of a total would not raise, so its dtype is tested.
                    if accumulator.elementwise:
                        accumulator.values.add_(x)
                    elif not accumulator.total:
                        accumulator.row.addmm_(accumulator.ones, x)
                    elif x.dtype is accumulator.dtype:
                        accumulator.add_total(x)
                    else:
                        raise RuntimeError("input dtype differs from the accumulator's")
                except RuntimeError:
                    count(site, record, phase, args, kwargs)
                else:
                    accumulator.rows += rows
                    record.calls += 1
                    if dense:
                        record.dense_rows += rows
                    else:
                        record.spike_rows += rows
            elif shape_only_dense[phase] and type(x) is torch.Tensor and x.dim() == 2 and x.shape[1] == in_features:
                record.calls += 1
                record.shape_rows += x.shape[0]
            else:
                count(site, record, phase, args, kwargs)
            counter.seconds += perf_counter() - start
            return class_forward(self_, *args, **kwargs)

        return forward

    def _conv_wrapper(self, site: _Site) -> Callable:
        """Return the wrapper of a convolution, with batched calls of the last per-sample shape inlined.

        A small dense CPU input of a kernel that covers it (the population decoder when acting)
        is counted on the host from one ``tolist``, without the accumulator. Other calls (the
        first of each shape, spike checks, other dtypes) take :meth:`_count_synapse`.
        """
        counter, stack, tallies, layer, count = self, self._stack, site.tallies, site.module, self._count_synapse
        class_forward = type(layer).forward
        shape_only, batched_rank = self._shape_only, len(layer.kernel_size) + 2
        dense = site.kind == "dense"
        group = _DENSE_ZEROS if dense else "spike"
        parameters = layer._parameters
        # Per phase: whether dense calls count their zero inputs, so the host count may apply.
        host_dense = tuple(dense and not shape_only for shape_only in self._shape_only)

        def forward(self_: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not stack or self_ is not layer:
                return class_forward(self_, *args, **kwargs)
            start = perf_counter()
            phase = stack[-1]
            record = tallies[phase]
            x = args[0] if args else None
            shape = x.shape if isinstance(x, torch.Tensor) else ()
            weight = parameters.get("weight")
            if (
                host_dense[phase]
                and site.covers
                and type(x) is torch.Tensor
                and shape[1:] == site.sample_shape
                and weight is not None
                and weight is site.weight
                and weight._version == site.weight_version
                and weight.data_ptr() == site.weight_pointer
                and not x.requires_grad
                and _count_dense_on_host(site, record, x)
            ):
                # _count_dense_on_host has booked the zero inputs, so only the shape counts remain.
                rows = shape[0]
                connections, record.out_units = site.per_sample
                record.calls += 1
                record.rows += rows
                record.mac += rows * connections
                record.dense_slots += x.numel()
            elif not site.fast or len(shape) != batched_rank or shape[1:] != site.sample_shape or x.dtype not in _ACCUMULATED_DTYPES:
                count(site, record, phase, args, kwargs)
            else:
                rows = shape[0]
                connections, record.out_units = site.per_sample
                record.calls += 1
                record.rows += rows
                if dense:
                    record.mac += rows * connections
                    record.dense_slots += x.numel()
                else:
                    record.ac_connections += rows * connections
                    record.spike_slots += x.numel()
                if dense and shape_only[phase]:
                    record.unmeasured_mac += rows * connections
                else:
                    _accumulate_conv(site, record, phase, group, x, rows)
            counter.seconds += perf_counter() - start
            return class_forward(self_, *args, **kwargs)

        return forward

    def _stepped_sites(self, parameters: tuple[int, ...]) -> list[_Site]:
        """Return the layers whose weight is one of ``parameters`` (ids of an optimizer's parameters)."""
        ids = set(parameters)
        return [site for site in self._weighted if id(site.current_weight()) in ids or id(site.weight) in ids]

    # ----------------------------------------------------------------------------- counting

    def _count_neuron(self, site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict, output: Any) -> None:
        self._neuron_calls += 1
        spikes = output if isinstance(output, torch.Tensor) else _first_tensor(output)
        record.calls += 1
        record.neuron_updates += spikes.numel() if spikes is not None else 0

    def _start_encoder(self, site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict) -> None:
        site.neuron_calls_before = self._neuron_calls

    def _count_encoder(self, site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict, output: Any) -> None:
        module = site.module
        observations = args[0] if args and isinstance(args[0], torch.Tensor) else _first_tensor(args)
        if observations is None:
            observations = _first_tensor(tuple(kwargs.values()))
        rows = 0
        if observations is not None:
            rows = 1 if observations.dim() <= 1 else observations.shape[0]
        record.calls += 1
        record.rows += rows
        record.out_units = site.encoder_units
        record.mac += rows * site.encoder_units
        # Like dense layers, the encoder tests its observations for NaN and ±inf only where zeros
        # are counted: the learning phase reads replayed observations, which the replay buffers
        # reject when non-finite.
        if observations is not None and not self._shape_only[phase]:
            _probe(site, record, phase, observations.detach() if observations.requires_grad else observations)

        if self._neuron_calls == site.neuron_calls_before and _emits_spikes(module):
            spikes = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            record.neuron_updates += spikes.numel() if spikes is not None else 0

    def _count_linear(self, site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict) -> None:
        """Count a Linear call that the wrapper's inlined path does not take, and prepare that path for the next call."""
        layer = site.module
        site.ready[phase] = None
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not site.fast or x.dim() != 2 or x.shape[1] != layer.in_features:
            self._count_synapse(site, record, phase, args, kwargs)
            return
        if x.dtype not in _ACCUMULATED_DTYPES:
            self._count_synapse(site, record, phase, args, kwargs)
            return

        dense, rows = site.kind == "dense", x.shape[0]
        record.calls += 1
        if dense and self._shape_only[phase]:
            record.shape_rows += rows
            return
        site.refresh_fanout(site.current_weight())
        x = x.detach()
        if dense:
            record.dense_rows += rows
            if _count_dense_on_host(site, record, x):
                return
            x = _dense_zeros(x)
        else:
            record.spike_rows += rows
        group = _DENSE_ZEROS if dense else "spike"
        accumulator = site.accumulator(record, phase, group, x, x.shape[1:], rows)
        accumulator.add(x)
        if rows and isinstance(layer._parameters.get("weight"), torch.Tensor):
            site.ready[phase] = accumulator

    def _count_synapse(self, site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict) -> None:
        """Count one call of any synaptic layer: every input kind, dtype and shape, spike checks included."""
        x = _first_tensor(args)
        if x is None:
            x = _first_tensor(tuple(kwargs.values()))
            if x is None:
                return
        x = x.detach()
        kind = site.kind if site.kind is not None else detect_kind(x)
        matrix, sample_shape = site.as_matrix(x)
        rows = matrix.shape[0]
        connections, out_units = site.per_sample_counts(sample_shape)
        record.calls += 1
        record.rows += rows
        record.out_units = out_units
        if kind == "dense":
            record.mac += rows * connections
            record.dense_slots += x.numel()
            if self._shape_only[phase]:
                record.unmeasured_mac += rows * connections
                return
        else:
            record.ac_connections += rows * connections
            record.spike_slots += x.numel()
            record.spike_kind = kind

        if matrix.dtype not in _ACCUMULATED_DTYPES:
            matrix = matrix.to(torch.float32)
        if rows > FLOAT32_EXACT_ROWS and matrix.dtype == torch.float32:
            matrix = matrix.to(torch.float64)
        if kind == "spike":
            indicator = matrix
        elif kind == "signed":
            indicator = matrix.abs()
        else:
            indicator = _dense_zeros(matrix)
        if kind != "dense" and site.kind is not None and site.take_spike_check():
            record.add_check(*spike_check(matrix, indicator.sum()))

        site.refresh_fanout(site.current_weight())
        group = _DENSE_ZEROS if kind == "dense" else kind
        site.accumulator(record, phase, group, indicator, sample_shape, rows).add(indicator)

    # ----------------------------------------------------------------------------- reading

    def _read(self, phase: int, reset: bool = False) -> list[tuple[_Site, _Tally, HostValues]]:
        """Return (site, tally, host values) for every module called in ``phase``; drop them with ``reset``.

        All device counts are copied to the host together, one transfer per device.
        """
        called = []
        tensors: list[torch.Tensor] = []
        for site in self._sites:
            record = site.tallies[phase]
            if record.calls:
                if isinstance(site.module, nn.Linear):
                    record.settle(site.module)
                parts = record.device_values(site)
                called.append((site, record, [key for key, _ in parts]))
                tensors.extend(tensor for _, tensor in parts)
                if reset:
                    site.tallies[phase] = _Tally()
                    site.ready[phase] = None

        host = iter(_to_host(tensors))
        items = []
        for site, record, keys in called:
            values: HostValues = {}
            for key in keys:
                read = next(host)
                previous = values.get(key)
                values[key] = read if previous is None else [a + b for a, b in zip(previous, read)]
            if record.host_dense is not None:
                dense = values.get("dense", [0.0, 0.0])
                values["dense"] = [dense[0] + record.host_dense[0], dense[1] + record.host_dense[1]]
            items.append((site, record, values))
        return items


# --------------------------------------------------------------------------------- helpers


# Counters that follow optimizer steps, served by one global step hook that is never removed. A
# hook per counter, removed when the counter is garbage collected, could be removed inside
# torch's loop over its hooks (a collection triggered by a hook's allocation), and torch then
# raised "OrderedDict mutated during iteration". A WeakSet defers removals while it is iterated.
# The hook reads the set as a tuple of its weak references, rebuilt when the set changes,
# because iterating the WeakSet itself at every step cost more than the rest of the hook.
# _STEPPED keeps, per optimizer, the layers its steps update and the counters to charge.
_WATCHING: weakref.WeakSet[OperationCounter] = weakref.WeakSet()
_WATCHING_REFS: list[tuple[weakref.ref, ...]] = [()]
_STEP_HOOK: list[torch.utils.hooks.RemovableHandle] = []
_STEPPED: weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[tuple, list[_Site], list[weakref.ref]]]
_STEPPED = weakref.WeakKeyDictionary()
# Changes whenever a cached list of stepped layers may be stale: a counter starts or stops
# following optimizers, or a counted layer's weight is replaced by another tensor (weight tying).
_LAYOUT_EPOCH = [0]


def _watch_optimizers(counter: OperationCounter) -> None:
    """Pass every optimizer step's updated weights to ``counter`` until :meth:`OperationCounter.remove`."""
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_post_hook(_optimizer_stepped))
    _WATCHING.add(counter)
    _forget_layouts()


def _unwatch_optimizers(counter: OperationCounter) -> None:
    _WATCHING.discard(counter)
    _forget_layouts()


def _forget_layouts() -> None:
    _WATCHING_REFS[0] = ()
    _STEPPED.clear()
    _LAYOUT_EPOCH[0] += 1


def _optimizer_stepped(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    """Make every counted layer whose weight ``optimizer`` just updated take its fan-out again at its next call.

    A fused optimizer step (``torch.optim.Adam(fused=True)`` in torch 2.13) leaves the weight's
    version counter unchanged, so the version check alone would miss it. The layers of each
    optimizer are found once, and again only when its parameters or the layout change.
    """
    start = perf_counter()
    refs = _WATCHING_REFS[0]
    if len(refs) != len(_WATCHING):
        # The set changed: a counter was created, removed, or collected without remove().
        refs = _WATCHING_REFS[0] = tuple(_WATCHING.data)
        _LAYOUT_EPOCH[0] += 1
    key = (_parameter_ids(optimizer), _LAYOUT_EPOCH[0])
    stepped = _STEPPED.get(optimizer)
    if stepped is None or stepped[0] != key:
        counters = [counter for counter in (ref() for ref in refs) if counter is not None]
        sites = [site for counter in counters for site in counter._stepped_sites(key[0])]
        stepped = _STEPPED[optimizer] = (key, sites, [weakref.ref(counter) for counter in counters])
    for site in stepped[1]:
        site.weight_version = -1
    # Each counter's own time is its share of the hook's.
    share = (perf_counter() - start) / max(1, len(stepped[2]))
    for ref in stepped[2]:
        counter = ref()
        if counter is not None:
            counter.seconds += share


def _parameter_ids(optimizer: torch.optim.Optimizer) -> tuple[int, ...]:
    return tuple(map(id, itertools.chain.from_iterable(group["params"] for group in optimizer.param_groups)))


def _count_root(site: _Site, record: _Tally, phase: int, args: tuple, kwargs: dict) -> None:
    record.calls += 1
    first = args[0] if args else None
    if isinstance(first, torch.Tensor):
        record.rows += 1 if first.dim() <= 1 else first.shape[0]
    else:
        record.rows += _leading_rows(args, kwargs)


def _accumulate_conv(site: _Site, record: _Tally, phase: int, group: str, x: torch.Tensor, rows: int) -> None:
    """Add a batched convolution input of the site's last per-sample shape to its accumulator."""
    weight = site.current_weight()
    if weight is not site.weight or weight._version != site.weight_version or weight.data_ptr() != site.weight_pointer:
        site.refresh_fanout(weight)
    x = x.detach() if x.requires_grad else x
    if group == _DENSE_ZEROS and site.covers and _count_dense_on_host(site, record, x):
        return
    matrix = x.reshape(rows, -1)
    if group == _DENSE_ZEROS:
        matrix = _dense_zeros(matrix)
    accumulator = record.accumulators.get(group)
    if accumulator is None or accumulator.shape != site.sample_shape or not accumulator.takes(matrix, rows):
        accumulator = site.accumulator(record, phase, group, matrix, site.sample_shape, rows)
    accumulator.add(matrix)


def _count_dense_on_host(site: _Site, record: _Tally, x: torch.Tensor) -> bool:
    """Book a small dense CPU input's effective MACs from its host copy; return False when it is not one.

    Every non-zero input drives the same scalar fan-out here (a zero-free Linear layer, or a
    zero-free convolution whose kernel covers its input), so ops = non-zero inputs · fan-out.
    """
    fanout = site.fanout
    if not x.is_cpu or x.numel() > _HOST_COUNT_ELEMENTS or not isinstance(fanout, float):
        return False
    values = x.reshape(-1).tolist()
    nonzero = len(values) - values.count(0.0)
    found = record.host_dense or [0.0, 0.0]
    # A NaN sum means NaN input, or +inf and -inf together; only then is every value tested.
    total = sum(values)
    if total != total and any(map(math.isnan, values)):
        record.host_dense = [math.nan, math.nan]
    else:
        record.host_dense = [found[0] + nonzero * fanout, found[1] + nonzero]
    return True


def _probe(site: _Site, record: _Tally, phase: int, x: torch.Tensor) -> None:
    """Add the encoder input to its NaN/inf probe: on the host when small, in place for 2-D float32/float64 input, else as a float64 sum."""
    if x.is_cpu and x.numel() <= _HOST_COUNT_ELEMENTS:
        values = x.reshape(-1).tolist()
        # The sum of finite float32 values is finite, so only a non-finite sum needs every value tested.
        if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
            record.nonfinite = True
        return
    if x.dim() != 2 or x.dtype not in _ACCUMULATED_DTYPES:
        record.add_probe(nan_probe(x))
        return
    accumulator = record.probe_rows
    if accumulator is None:
        accumulator = record.probe_rows = site.buffer(phase, "probe", x.shape[1:], x.dtype, x.device, _PROBE_SCALE)
    elif x.shape[1:] != accumulator.shape or not accumulator.takes(x, 0):
        record.add_probe(nan_probe(x))
        return
    accumulator.add(x)


_ZERO_BASES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _dense_zeros(x: torch.Tensor) -> torch.Tensor:
    # 0**|x| is 1 at zero (±0), 0 at every other value including ±inf and denormals, and NaN at
    # NaN: the zero indicator in two elementwise operations, with NaN kept for the NaN check.
    # A 0-dim tensor base costs about half as much per call as a Python scalar base.
    key = (x.dtype, x.device)
    base = _ZERO_BASES.get(key)
    if base is None:
        with torch.inference_mode(False):
            base = _ZERO_BASES[key] = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.pow(base, x.abs())


def _to_host(tensors: list[torch.Tensor]) -> list[list[float]]:
    """Return every 1-D tensor as a list of floats, with one transfer per accelerator."""
    if all(tensor.is_cpu for tensor in tensors):
        return [tensor.tolist() for tensor in tensors]
    values: list[list[float]] = [[] for _ in tensors]
    by_device: dict[torch.device, list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(index)
    for indices in by_device.values():
        joined = torch.cat([tensors[i].to(torch.float64) for i in indices]).tolist()
        offset = 0
        for i in indices:
            size = tensors[i].numel()
            values[i] = joined[offset : offset + size]
            offset += size
    return values


def _emits_spikes(module: nn.Module) -> bool:
    # Read without getattr's default, which would make nn.Module raise and catch an AttributeError.
    value = vars(module).get("emits_spikes")
    return bool(getattr(type(module), "emits_spikes", True) if value is None else value)


def _phase_index(phase: str) -> int:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}, expected one of {', '.join(PHASES)}")
    return PHASES.index(phase)


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


def _report(site: _Site, record: _Tally, values: HostValues) -> dict[str, Any]:
    spike = values.get("spike", [0.0, 0.0])
    dense = values.get("dense", [0.0, 0.0])
    return {
        "name": site.name,
        "role": site.role,
        "kind": _report_kind(site, record),
        "neuron_model": site.neuron_model,
        "calls": record.calls,
        "rows": record.rows,
        "ac": _as_count(spike[0]),
        "mac": record.mac,
        "effective_mac": _effective_mac(site, record, dense),
        "ac_connections": record.ac_connections,
        "neuron_updates": record.neuron_updates,
        "nonzero_inputs": _as_count(spike[1]) + _as_count(dense[1]),
        "spike_inputs": _as_count(spike[1]),
        "spike_input_slots": record.spike_slots,
        "input_elements": record.spike_slots + record.dense_slots,
        "out_units": record.out_units,
    }


def _effective_mac(site: _Site, record: _Tally, dense: list[float]) -> int:
    encoder_mac = record.mac if site.role == "encoder" else 0
    return _as_count(dense[0]) + record.unmeasured_mac + encoder_mac


def _report_kind(site: _Site, record: _Tally) -> str:
    if site.role != "synapse":
        return site.role
    if site.kind is not None:
        return "dense" if site.kind == "dense" else "spike"
    if record.spike_slots and record.dense_slots:
        return "mixed"
    return "dense" if record.dense_slots else "spike"


def _as_count(value: float) -> int:
    # NaN is reported by _invalid_inputs; here it counts as zero.
    return int(round(value)) if math.isfinite(value) else 0


def _invalid_inputs(record: _Tally, values: HostValues) -> str | None:
    dense = values.get("dense")
    if dense is not None and any(math.isnan(value) for value in dense):
        return "received NaN input values"
    for key in ("probe", "probe_rows"):
        probe = values.get(key)
        if record.nonfinite or (probe is not None and not all(math.isfinite(value) for value in probe)):
            return "received NaN or infinite input values"

    spike = values.get("spike", [])
    gap = values.get("gap", [0.0])[0]
    extremes = values.get("extremes", [0.0, 0.0])
    if any(math.isnan(value) for value in spike) or math.isnan(gap) or any(math.isnan(value) for value in extremes):
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


def _raise_on_invalid(items: list[tuple[_Site, _Tally, HostValues]], phase: str) -> None:
    problems = []
    for site, record, values in items:
        problem = _invalid_inputs(record, values)
        if problem:
            problems.append(f"{site.name} {problem}")
    if problems:
        raise ValueError(f"invalid inputs while counting phase {phase!r}:\n  " + "\n  ".join(problems))


def _sum_items(items: list[tuple[_Site, _Tally, HostValues]]) -> OperationCounts:
    counts = OperationCounts()
    updates = counts.neuron_updates
    for site, record, values in items:
        role = site.role
        if role == "root":
            counts.samples += record.rows
            counts.forward_passes += record.calls
            continue
        if record.neuron_updates:
            updates[site.neuron_model] = updates.get(site.neuron_model, 0) + record.neuron_updates
        if role == "neuron":
            continue
        counts.mac += record.mac
        counts.ac_connections += record.ac_connections
        counts.spike_input_slots += record.spike_slots
        counts.effective_mac += _effective_mac(site, record, values.get("dense", [0.0, 0.0]))
        spike = values.get("spike")
        if spike is not None:
            counts.ac += _as_count(spike[0])
            counts.spike_inputs += _as_count(spike[1])
    return counts


# --------------------------------------------------------------------------------- one-shot counting


def count_operations(module: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> dict[str, Any]:
    """Run ``module(*inputs)`` once without gradients and return its operations per sample.

    Per-sample values are totals divided by the rows of the module's input, summed over all T
    steps and all layers. ``layers`` lists every counted module with its per-sample ``ac``,
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
