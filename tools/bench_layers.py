"""Time the spiking actors' building blocks that the throughput work compared against alternatives.

Prints one JSON object, every figure the median time in microseconds over about ``--budget``
seconds, one torch thread unless ``--threads`` is given:

- ``covering_conv``: the grouped convolutions whose kernel spans their input (PopSAN's 6 x 10
  decoder at batch 1 and 256, ILC-SAN's intra-population layer of 6 populations of 10, BPT-SAN's
  256 lateral pairs, both at batch 256), forward and forward+backward, as ``nn.Conv1d`` (oneDNN
  on CPU) and as ``CoveringConv1d`` (product and sum, or a batched matrix product).
- ``lif_neuron``: one PopSAN ``leaky`` neuron layer on currents [5, 256, 256], forward and
  forward+backward.
- ``linear``: ``nn.Linear`` (``F.linear``, the BLAS library) against ``neurorl.snn.linear.Linear``
  on oneDNN, forward and forward+backward, for the layer shapes of a TD3 update at batch 256 and of
  PopSAN at batch 256 and T = 5 (1280 rows), plus GFLOP/s of one [256, 256] x [256, 256] product.
- ``sparse_spikes``: ``torch.nonzero`` on a [1280, 256] spike input at 1%, 5.5% and 11% non-zero,
  the dense ``F.linear`` to 256 outputs, and the gather-and-sum product of the same input
  (``torch.nonzero`` then ``F.embedding_bag`` over the transposed weight).

Run: ``python tools/bench_layers.py --json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from neurorl import runtime
from neurorl.snn import linear as linear_backend
from neurorl.snn.decoding import CoveringConv1d
from neurorl.snn.neurons import make_neuron

# A sibling script: running tools/bench_layers.py puts tools/ on sys.path.
from bench_actors import median_ms  # noqa: E402  (isort: skip)

SPIKE_RATES = (0.01, 0.055, 0.11)
# (rows, in, out): the critic's and ANN actor's layers at batch 256, then PopSAN's at T = 5.
LINEAR_SHAPES = ((256, 14, 256), (256, 256, 256), (256, 256, 3), (1280, 110, 256), (1280, 256, 256), (1280, 256, 30))


def median_us(fn: Callable[[], object], budget_s: float) -> float:
    """Return the median wall time of ``fn`` in microseconds, repeating it for about ``budget_s``."""
    return round(median_ms(fn, budget_s, min_repeats=5) * 1e3, 1)


def time_layer(layer: nn.Module, x: torch.Tensor, budget_s: float) -> dict[str, float]:
    """Return the forward and forward+backward times of ``layer`` on ``x``."""
    x = x.detach().requires_grad_(True)

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    def forward_backward() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return {"forward_us": median_us(forward, budget_s), "forward_backward_us": median_us(forward_backward, budget_s)}


def covering_conv(budget_s: float) -> dict[str, dict]:
    """Time each covering convolution as ``nn.Conv1d`` and as ``CoveringConv1d`` with the same weights."""
    cases = {
        "popsan_decoder_batch_1": (6, 6, 10, (1, 6, 10)),
        "popsan_decoder_batch_256": (6, 6, 10, (256, 6, 10)),
        "ilcsan_lateral_batch_256": (6, 60, 10, (256, 6, 10)),
        "bptsan_lateral_batch_256": (256, 256, 2, (256, 256, 2)),
    }
    results = {}
    for name, (channels, outputs, kernel, shape) in cases.items():
        torch.manual_seed(0)
        covering = CoveringConv1d(channels, outputs, kernel_size=kernel, groups=channels)
        conv = nn.Conv1d(channels, outputs, kernel_size=kernel, groups=channels)
        conv.load_state_dict(covering.state_dict())
        x = torch.rand(shape)
        results[name] = {"conv1d": time_layer(conv, x, budget_s), "covering": time_layer(covering, x, budget_s)}
    return results


def lif_neuron(budget_s: float) -> dict[str, float]:
    torch.manual_seed(0)
    return time_layer(make_neuron("leaky"), torch.randn(5, 256, 256), budget_s)


def sparse_spikes(budget_s: float) -> dict[str, dict]:
    """Time index extraction and the dense and gather-and-sum products of a [1280, 256] spike input."""
    torch.manual_seed(0)
    weight, bias = torch.randn(256, 256), torch.randn(256)
    transposed = weight.t().contiguous()
    rows = torch.arange(1280)
    results = {}
    for rate in SPIKE_RATES:
        x = (torch.rand(1280, 256) < rate).float()

        def gather_product() -> torch.Tensor:
            row, column = x.nonzero().unbind(1)
            offsets = torch.searchsorted(row, rows)
            return F.embedding_bag(column, transposed, offsets, mode="sum") + bias

        results[f"rate_{rate}"] = {
            "nonzero_us": median_us(lambda: x.nonzero(), budget_s),
            "dense_linear_us": median_us(lambda: F.linear(x, weight, bias), budget_s),
            "gather_product_us": median_us(gather_product, budget_s),
        }
    return results


def linear_layers(budget_s: float) -> dict[str, object]:
    """Time each shape of LINEAR_SHAPES as nn.Linear and as Linear on oneDNN (empty without oneDNN)."""
    if not linear_backend.onednn_available():
        return {}
    before = linear_backend.current_backend()
    linear_backend.set_backend("onednn")
    results: dict[str, object] = {}
    try:
        for rows, fan_in, fan_out in LINEAR_SHAPES:
            plain = nn.Linear(fan_in, fan_out)
            ours = linear_backend.Linear(fan_in, fan_out)
            ours.load_state_dict(plain.state_dict())
            x = torch.randn(rows, fan_in)
            results[f"{rows}x{fan_in}_to_{fan_out}"] = {
                "nn_linear": time_layer(plain, x, budget_s), "onednn_linear": time_layer(ours, x, budget_s),
            }
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        flop = 2 * 256**3 / 1e3
        blas_us = median_us(lambda: torch.mm(a, b.t()), budget_s)
        onednn_us = median_us(lambda: linear_backend.linear_product(a, b, None), budget_s)
        results["gflops_256_cubed"] = {"blas": round(flop / blas_us, 1), "onednn": round(flop / onednn_us, 1)}
    finally:
        linear_backend.set_backend(before)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (the only output format)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of repeated timing per figure (default 1.0)")
    args = parser.parse_args()
    if args.budget <= 0:
        parser.error(f"--budget must be positive, got {args.budget}")
    runtime.configure(args.threads, retain_memory=True)

    result = {
        "tool": "tools/bench_layers.py",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.system()}".strip(),
        "covering_conv": covering_conv(args.budget),
        "lif_neuron": lif_neuron(args.budget),
        "linear": linear_layers(args.budget),
        "sparse_spikes": sparse_spikes(args.budget),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
