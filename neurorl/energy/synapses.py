"""Closed-form pieces of the operation count of a synaptic layer (Linear, Conv, one-to-one).

The count of a call is Σ over non-zero input elements of their fan-out (the non-zero weights
they drive). It is the AC count of a spike-fed layer and the effective MAC count of a dense-fed
one. For ``nn.Linear`` it factorises as ``per_input · fanout``, with ``per_input`` the non-zero
inputs per input feature summed over rows. Convolutions factorise the same way per input channel
and position. The counter adds up the per-input counts across calls and takes the product
(:func:`pending_values`) only when the fan-out changes or the counts are read. The counts stay on
the input's device as tensors, so no host synchronisation happens per call. The exceptions are
:func:`detect_kind` and the CPU-only shortcut of :func:`zero_free`.

Input kinds: ``"spike"`` (values in {0, 1}), ``"signed"`` (values in {−1, 0, 1}, NeuroBench's
spike rule) and ``"dense"`` (anything else). NaN stays NaN through every indicator here, so a NaN
input turns the counts into NaN, which the counter reports.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


FLOAT32_EXACT_ROWS = 2**24
"""Rows up to which a float32 sum of 0/1 values is exact (every integer up to 2**24 is a float32)."""


def zero_free(weight: torch.Tensor) -> bool:
    """Return whether a CPU floating-point weight has no zero and no NaN, with one min(|W|) reduction.

    Other devices return False, because the test would need a host synchronisation.
    """
    if weight.device.type != "cpu" or not weight.numel() or not weight.is_floating_point():
        return False
    return bool(weight.detach().abs().amin().item() > 0)


def linear_fanout(weight: torch.Tensor) -> torch.Tensor | float:
    """Return the non-zero weights in each input column of a Linear weight [out, in].

    A weight that passes :func:`zero_free` (the usual case after training) drives every output
    from every input, so the number of outputs is returned as a plain float. That is cheaper than
    the per-column count at every optimizer step, and consecutive zero-free versions share one
    fan-out, so their pending counts need no flush.
    """
    if zero_free(weight):
        return float(weight.shape[0])
    return nonzero_indicator(weight.detach(), "dense").sum(0, dtype=torch.float64)


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


def pending_values(layer: nn.Module, pending: torch.Tensor, fanout: torch.Tensor | float) -> torch.Tensor:
    """Return float64 [ops, non-zero inputs] of summed per-input counts and their layer's fan-out.

    For a Linear layer ``pending`` is [in] and ``fanout`` [in]. For a one-to-one layer
    ``pending`` is [width] and ``fanout`` broadcasts to it. For a convolution ``pending`` is
    [C_in, *spatial] and ``fanout`` [C_in, *kernel]. The pending counts are first summed over the
    input positions each kernel tap reads (:func:`window_sums`). Each tap is then weighted by the
    non-zero weights it meets in its own group (:func:`conv_fanout`). A float ``fanout`` (from
    :func:`layer_fanout`) is the same for every input or tap.
    """
    pending = pending.to(torch.float64)
    if isinstance(layer, nn.modules.conv._ConvNd):
        taps = pending if kernel_covers_input(layer, pending.shape[1:]) else window_sums(layer, pending)[0]
    else:
        taps = pending
    if isinstance(fanout, float):
        ops = taps.sum() * fanout
    else:
        ops = (taps * fanout.to(pending.device)).sum()
    return torch.stack((ops, pending.sum()))


def layer_fanout(layer: nn.Module, weight: torch.Tensor | float) -> torch.Tensor | float:
    """Return the fan-out of ``layer`` for :func:`pending_values`.

    A float when the weight passes :func:`zero_free`: the outputs of a Linear layer, the output
    channels per group of a convolution, or 1 for a one-to-one layer (``weight`` is then its
    ``V``, a tensor or a number). A float64 tensor otherwise.
    """
    if isinstance(layer, nn.modules.conv._ConvNd):
        if zero_free(weight):
            return float(layer.out_channels // layer.groups)
        return conv_fanout(layer, weight.detach())
    if isinstance(layer, nn.Linear):
        return linear_fanout(weight)
    if not isinstance(weight, torch.Tensor):
        return 1.0 if weight != 0 else 0.0
    if zero_free(weight):
        return 1.0
    return nonzero_indicator(weight.detach(), "dense").to(torch.float64)


def kernel_covers_input(layer: nn.modules.conv._ConvNd, spatial: torch.Size) -> bool:
    """Return whether one output position reads every input once (the population decoder), so taps are the inputs."""
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
