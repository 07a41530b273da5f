"""Closed-form operation counts of one call of a synaptic layer (Linear, Conv, one-to-one).

The count of a call is Σ over non-zero input elements of their fan-out (the non-zero weights
they drive). It is the AC count of a spike-fed layer and the effective MAC count of a dense-fed
one. The counts stay on the input's device as tensors, so no host synchronisation happens per
call. The exceptions are :func:`detect_kind` and the CPU-only shortcut of :func:`linear_fanout`.

For ``nn.Linear`` the count factorises as ``per_input · fanout``, with ``per_input`` the non-zero
inputs per input feature summed over rows. Convolutions factorise the same way per input channel
and position. The counter adds up the per-input counts across calls and takes the product
(:func:`pending_values`) only when the weights or the input shape change or the counts are read.
A spike call thus costs one pass over its input, and a dense call four.

Input kinds: ``"spike"`` (values in {0, 1}), ``"signed"`` (values in {−1, 0, 1}, NeuroBench's
spike rule) and ``"dense"`` (anything else). The non-zero indicator of a dense input is
``ceil(min(|x|, 1))``, because float arithmetic is several times faster than a comparison
producing a bool tensor on CPU (torch 2.13, AVX2). NaN stays NaN through it, so a NaN input turns
the counts into NaN, which the counter reports. Column sums are taken in float32 (float64 for
float64 inputs), which is exact while a call has fewer than 2**24 rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SynapseCall:
    """Counts of one call of one synaptic layer.

    ``per_input`` (Linear and Conv) still has to be multiplied by the fan-out. Other layers
    return their finished ``ops`` and ``nonzero`` counts. ``gap`` and ``extremes`` are the spike check
    of :func:`spike_check`, present only when it ran.
    """

    rows: int
    connections: int
    out_units: int
    per_input: torch.Tensor | None = None
    ops: torch.Tensor | None = None
    nonzero: torch.Tensor | None = None
    gap: torch.Tensor | None = None
    extremes: torch.Tensor | None = None


def nonzero_indicator(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Return 1 where ``x`` is non-zero and 0 elsewhere, as numbers. NaN stays NaN.

    Spike inputs are their own indicator. Dense inputs use ``ceil(min(|x|, 1))``, which keeps NaN
    (``sign`` would map it to 0 on CPU in torch 2.13) and maps every non-zero value, denormals
    included, to 1.
    """
    if kind == "spike":
        return x
    if kind == "signed":
        return x.abs()
    if not x.is_floating_point():
        return (x != 0).to(torch.float32)
    return x.abs().clamp_(max=1.0).ceil_()


def nan_probe(x: torch.Tensor) -> torch.Tensor:
    """Return the float64 sum of ``x``: finite when ``x`` is finite, NaN or inf otherwise.

    Sums of probes stay finite for any realistic input (float64 overflows only past 1e308).
    """
    if not x.is_floating_point():
        return torch.zeros((), dtype=torch.float64, device=x.device)
    return x.sum(dtype=torch.float64)


def column_sums(values: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    return values.sum(0, dtype=dtype)


def linear_fanout(weight: torch.Tensor) -> torch.Tensor | float:
    """Return the non-zero weights in each input column of a Linear weight [out, in].

    On CPU a weight without zeros (the usual case after training) is recognised with one
    min(|W|) reduction, and the number of outputs is returned as a plain float. That is cheaper
    than the per-column count at every optimizer step, and consecutive zero-free versions share
    one fan-out. On other devices the test would need a host synchronisation, so the per-column
    tensor is always computed there.
    """
    weight = weight.detach()
    if weight.device.type == "cpu" and weight.numel() and weight.is_floating_point():
        if weight.abs().amin().item() > 0:
            return float(weight.shape[0])
    return nonzero_indicator(weight, "dense").sum(0, dtype=torch.float64)


def spike_check(flat: torch.Tensor, indicator_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``gap`` and ``[−min, max]`` of a spike input, the evidence that it is binary.

    For values in [0, 1], x ≥ x² with equality only at 0 and 1, so Σx − Σx² (``gap``) is 0 exactly
    when every value is 0 or 1. Values outside [0, 1] show in the extremes. For signed spikes the
    same argument applies to |x| and the range [−1, 1].
    """
    values = flat.reshape(-1)
    if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
        values = values.to(torch.float32)
    if values.numel() == 0:
        zero = indicator_total.new_zeros((), dtype=torch.float64)
        return zero, torch.stack((zero, zero))
    low, high = torch.aminmax(values)
    gap = indicator_total.to(torch.float64) - torch.dot(values, values).to(torch.float64)
    return gap, torch.stack((-low.to(torch.float64), high.to(torch.float64)))


def linear_call(layer: nn.Linear, x: torch.Tensor, kind: str, check: bool) -> SynapseCall:
    """Count one call of ``nn.Linear`` up to the fan-out product (see :class:`SynapseCall`)."""
    if x.dim() == 0 or x.shape[-1] != layer.in_features:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match in_features={layer.in_features} of {layer}")
    flat = x.reshape(-1, layer.in_features)
    rows = flat.shape[0]
    per_input = column_sums(nonzero_indicator(flat, kind))
    call = SynapseCall(rows, rows * layer.in_features * layer.out_features, layer.out_features, per_input=per_input)
    _add_checks(call, flat, kind, check)
    return call


def _add_checks(call: SynapseCall, flat: torch.Tensor, kind: str, check: bool) -> None:
    if kind != "dense" and check:
        total = call.per_input.sum() if call.per_input is not None else call.nonzero
        call.gap, call.extremes = spike_check(flat, total)


def elementwise_call(layer: nn.Module, x: torch.Tensor, kind: str, check: bool) -> SynapseCall:
    """Count one call of snnTorch's ``RecurrentOneToOne`` (``x * V``): fan-out 1 where V ≠ 0."""
    width = x.shape[-1] if x.dim() else 1
    flat = x.reshape(-1, width)
    rows = flat.shape[0]
    weight = torch.as_tensor(layer.V, device=x.device).detach()
    fanout = torch.broadcast_to(nonzero_indicator(weight.to(torch.float64), "dense"), (width,))

    per_input = column_sums(nonzero_indicator(flat, kind))
    ops = torch.dot(per_input.to(torch.float64), fanout)
    nonzero = per_input.sum().to(torch.float64)
    call = SynapseCall(rows, rows * width, width, ops=ops, nonzero=nonzero)
    _add_checks(call, flat, kind, check)
    return call


def conv_call(
    layer: nn.modules.conv._ConvNd,
    x: torch.Tensor,
    kind: str,
    connections: dict[tuple[int, tuple[int, ...]], tuple[int, int]],
    check: bool,
) -> SynapseCall:
    """Count one call of ``nn.Conv1d/2d/3d`` up to the fan-out product (see :func:`pending_values`).

    The fan-out of an input element depends on its position, so the pending count is the
    non-zero indicator summed over the batch, per input channel and position: [C_in, *spatial].
    """
    spatial_dims = len(layer.kernel_size)
    batched = x.dim() == spatial_dims + 2
    if not batched and x.dim() != spatial_dims + 1:
        raise ValueError(f"input of shape {tuple(x.shape)} has the wrong rank for {layer}")
    if x.shape[-spatial_dims - 1] != layer.in_channels:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match in_channels={layer.in_channels} of {layer}")
    rows = x.shape[0] if batched else 1

    active = nonzero_indicator(x, kind)
    per_position = column_sums(active) if batched else active.to(torch.float32)
    per_sample, out_units = conv_connections(layer, tuple(per_position.shape), connections)
    call = SynapseCall(rows, rows * per_sample, out_units, per_input=per_position)
    _add_checks(call, x.reshape(rows, -1), kind, check)
    return call


def pending_values(layer: nn.Module, pending: torch.Tensor, fanout: torch.Tensor) -> torch.Tensor:
    """Return float64 [ops, non-zero inputs] of summed per-input counts and their layer's fan-out.

    For a Linear layer ``pending`` is [in] and ``fanout`` [in]. For a convolution ``pending`` is
    [C_in, *spatial] and ``fanout`` [C_in, *kernel]. The pending counts are first summed over the
    input positions each kernel tap reads (:func:`window_sums`). Each tap is then weighted by the
    non-zero weights it meets in its own group (:func:`conv_fanout`).
    """
    pending = pending.to(torch.float64)
    fanout = fanout.to(pending.device)
    if isinstance(layer, nn.modules.conv._ConvNd):
        taps = pending if _kernel_covers_input(layer, pending.shape[1:]) else window_sums(layer, pending)[0]
        ops = torch.dot(taps.reshape(-1), fanout.reshape(-1))
    else:
        ops = torch.dot(pending, fanout)
    return torch.stack((ops, pending.sum()))


def layer_fanout(layer: nn.Module, weight: torch.Tensor) -> torch.Tensor | float:
    """Return the fan-out of ``layer`` for :func:`pending_values` (a float for zero-free Linear on CPU)."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        return conv_fanout(layer, weight.detach())
    return linear_fanout(weight)


def shape_call(layer: nn.Module, x: torch.Tensor, connections: dict[tuple[int, tuple[int, ...]], tuple[int, int]]) -> SynapseCall:
    """Return rows, connections and output units of one call from shapes alone (no data pass)."""
    if isinstance(layer, nn.Linear):
        if x.dim() == 0 or x.shape[-1] != layer.in_features:
            raise ValueError(f"input of shape {tuple(x.shape)} does not match in_features={layer.in_features} of {layer}")
        rows = x.numel() // layer.in_features if layer.in_features else 0
        return SynapseCall(rows, rows * layer.in_features * layer.out_features, layer.out_features)
    if isinstance(layer, nn.modules.conv._ConvNd):
        spatial_dims = len(layer.kernel_size)
        batched = x.dim() == spatial_dims + 2
        rows = x.shape[0] if batched else 1
        per_sample, out_units = conv_connections(layer, tuple(x.shape[1:] if batched else x.shape), connections)
        return SynapseCall(rows, rows * per_sample, out_units)
    width = x.shape[-1] if x.dim() else 1
    rows = x.numel() // width if width else 0
    return SynapseCall(rows, rows * width, width)


def _kernel_covers_input(layer: nn.modules.conv._ConvNd, spatial: torch.Size) -> bool:
    # One output position reading every input once (the population decoder): taps are the inputs.
    unpadded = not any(layer._reversed_padding_repeated_twice)
    undilated = all(d == 1 for d in layer.dilation)
    return unpadded and undilated and tuple(spatial) == tuple(layer.kernel_size)


def conv_connections(
    layer: nn.modules.conv._ConvNd,
    shape: tuple[int, ...],
    cache: dict[tuple[int, tuple[int, ...]], tuple[int, int]],
) -> tuple[int, int]:
    """Return (connections per sample, output elements per sample) for one input shape, cached."""
    key = (id(layer), shape)
    cached = cache.get(key)
    if cached is None:
        taps, out_positions = window_sums(layer, torch.ones(shape, dtype=torch.float64))
        per_channel = layer.out_channels // layer.groups
        cached = (int(taps.sum().item()) * per_channel, out_positions * layer.out_channels)
        cache[key] = cached
    return cached


def conv_fanout(layer: nn.modules.conv._ConvNd, weight: torch.Tensor) -> torch.Tensor:
    """Return, per input channel and kernel tap, the non-zero weights it meets: shape [C_in, *k].

    Weight [C_out, C_in/groups, *k]; input channel c belongs to group c // (C_in/groups) and
    meets only that group's C_out/groups output channels.
    """
    groups = layer.groups
    nonzero = nonzero_indicator(weight, "dense").to(torch.float64)
    per_group = nonzero.reshape(groups, layer.out_channels // groups, *nonzero.shape[1:]).sum(1)
    return per_group.reshape(layer.in_channels, *nonzero.shape[2:])


def window_sums(layer: nn.modules.conv._ConvNd, per_position: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum ``per_position`` [C, *spatial] over the input positions each kernel tap reads.

    Returns [C, *kernel] sums and the number of output positions. Padding uses the layer's own
    mode, so zero padding adds nothing and reflect/replicate/circular padding counts the copied
    inputs, as the layer reads them.
    """
    padding = layer._reversed_padding_repeated_twice
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    padded = F.pad(per_position, list(padding), mode=mode) if any(padding) else per_position

    windows = padded
    spatial_dims = len(layer.kernel_size)
    for axis in range(spatial_dims):
        span = layer.dilation[axis] * (layer.kernel_size[axis] - 1) + 1
        windows = windows.unfold(1 + axis, span, layer.stride[axis])
    # windows is [C, *out_positions, *spans]; every dilation-th element of a span is a tap.
    index = (slice(None),) * (1 + spatial_dims) + tuple(slice(None, None, d) for d in layer.dilation)
    taps = windows[index]
    out_positions = math.prod(windows.shape[1 : 1 + spatial_dims])
    return taps.sum(dim=tuple(range(1, 1 + spatial_dims))), out_positions


def detect_kind(x: torch.Tensor) -> str:
    """Classify an input by NeuroBench's rule: all values in {0, 1, −1} are spikes.

    Costs one host synchronisation, which only layers without ``input_kind`` pay.
    """
    if x.numel() == 0:
        return "signed"
    is_spike = bool(((x == 0) | (x.abs() == 1)).all())
    return "signed" if is_spike else "dense"
