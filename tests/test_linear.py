"""Linear products on oneDNN: same results as F.linear to float32 rounding, fallbacks, settings."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurorl.config import ConfigError, build_config
from neurorl.energy import count_operations
from neurorl.energy.discovery import dense_chain
from neurorl.snn import linear
from neurorl.snn.stacked import StackedLinear

needs_onednn = pytest.mark.skipif(not linear.onednn_available(), reason="this PyTorch build has no oneDNN linear product")


@pytest.fixture
def backend():
    """Restore the process's linear backend after a test that changes it."""
    before = linear.current_backend()
    yield linear.set_backend
    linear.set_backend(before)


@pytest.fixture
def onednn_calls(monkeypatch):
    """Count the calls that reach oneDNN's linear product."""
    calls = []
    product = torch.ops.mkldnn._linear_pointwise

    def counted(*args):
        calls.append(tuple(args[0].shape))
        return product(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", counted)
    return calls


def reference_and_result(shape, out_features, bias=True, seed=0):
    """Return (F.linear's output and gradients, linear()'s output and gradients) for one random case."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator)
    weight = torch.randn(out_features, shape[-1], generator=generator) / shape[-1] ** 0.5
    b = torch.randn(out_features, generator=generator) if bias else None
    upstream = torch.randn(*shape[:-1], out_features, generator=generator)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight) + ((b,) if bias else ())]
        y = fn(leaves[0], leaves[1], leaves[2] if bias else None)
        (y * upstream).sum().backward()
        return [y.detach()] + [leaf.grad for leaf in leaves]

    return run(F.linear), run(linear.linear)


@needs_onednn
@pytest.mark.parametrize("shape, out_features, bias", [
    ((256, 256), 256, True),
    ((5, 256, 110), 256, True),
    ((1280, 256), 30, False),
    ((256, 14), 256, True),
])
def test_onednn_matches_f_linear(backend, onednn_calls, shape, out_features, bias):
    backend("onednn")
    expected, actual = reference_and_result(shape, out_features, bias)

    assert onednn_calls, "the product should have run on oneDNN"
    assert actual[0].shape == expected[0].shape
    for name, want, got in zip(("output", "grad x", "grad weight", "grad bias"), expected, actual):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=name)


@needs_onednn
def test_small_products_stay_on_blas(backend, onednn_calls):
    """[256, 256] → 3 outputs: every product is below the threshold, so none reaches oneDNN."""
    backend("onednn")
    rows, inputs, outputs = 256, 256, 3
    assert rows * inputs * outputs < linear.ONEDNN_MIN_MACS
    expected, actual = reference_and_result((rows, inputs), outputs)
    assert onednn_calls == []
    for want, got in zip(expected, actual):
        assert torch.equal(got, want)


@needs_onednn
def test_onednn_is_deterministic(backend):
    backend("onednn")
    _, first = reference_and_result((300, 256), 256, seed=3)
    _, second = reference_and_result((300, 256), 256, seed=3)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_blas_backend_is_f_linear(backend, onednn_calls):
    backend("blas")
    expected, actual = reference_and_result((256, 256), 256)
    assert onednn_calls == []
    for want, got in zip(expected, actual):
        assert torch.equal(got, want)


@needs_onednn
@pytest.mark.parametrize("case", ["float64", "one row of features", "empty", "1-d"])
def test_other_inputs_fall_back_to_f_linear(backend, onednn_calls, case):
    backend("onednn")
    weight = torch.randn(256, 256)
    x = {
        "float64": torch.randn(512, 256, dtype=torch.float64),
        "one row of features": torch.randn(1, 256),
        "empty": torch.randn(0, 256),
        "1-d": torch.randn(256),
    }[case]
    w = weight.to(x.dtype)
    assert torch.equal(linear.linear(x, w), F.linear(x, w))
    assert onednn_calls == []


@needs_onednn
def test_nan_input_propagates(backend):
    backend("onednn")
    x = torch.randn(512, 256)
    x[7, 3] = float("nan")
    y = linear.linear(x, torch.randn(256, 256), torch.zeros(256))
    assert torch.isnan(y[7]).all()
    assert not torch.isnan(y[torch.arange(512) != 7]).any()


@needs_onednn
def test_inference_matches_training_output(backend, onednn_calls):
    backend("onednn")
    layer = linear.Linear(256, 256)
    x = torch.randn(512, 256)
    with torch.inference_mode():
        inferred = layer(x)
    assert torch.equal(inferred, layer(x).detach())
    assert len(onednn_calls) == 2


def test_unknown_backend_is_rejected(backend):
    with pytest.raises(ValueError, match="linear backend 'gpu' is unknown; use one of auto, onednn, blas"):
        backend("gpu")


def test_missing_onednn_is_reported(backend, monkeypatch):
    monkeypatch.setattr(linear, "onednn_available", lambda: False)
    with pytest.raises(ValueError, match="no oneDNN linear product"):
        backend("onednn")
    assert backend("auto") == "blas"
    with pytest.raises(ConfigError, match="--linear-backend='onednn'"):
        build_config({}, {"linear_backend": "onednn"})


def test_config_rejects_unknown_backend():
    with pytest.raises(ConfigError, match="--linear-backend='mkl': unknown value; choose one of auto, onednn, blas"):
        build_config({}, {"linear_backend": "mkl"})


def test_linear_keeps_nn_linear_state_dict():
    torch.manual_seed(0)
    plain = nn.Linear(17, 256)
    ours = linear.Linear(17, 256)
    ours.load_state_dict(plain.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(4, 17)
    assert torch.equal(ours(x), plain(x))


def test_counter_treats_linear_as_nn_linear():
    """A chain of Linear layers counts one MAC per connection: 17-256-256-6 is 71,424 per sample."""
    def chain(cls):
        layers = [cls(17, 256), nn.ReLU(), cls(256, 256), nn.ReLU(), cls(256, 6)]
        for layer in layers[::2]:
            layer.input_kind = "dense"
        return nn.Sequential(*layers)

    ours = chain(linear.Linear)
    assert dense_chain(ours) == [ours[0], ours[2], ours[4]]
    counts = count_operations(ours, torch.randn(3, 17))
    assert counts["mac"] == 17 * 256 + 256 * 256 + 256 * 6

    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    assert dense_chain(chain(Doubled)) is None


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_stacked_linear_matches_seeds_bitwise(backend, onednn_calls, bias):
    """Three seeds of a 256 → 256 layer on 300 rows: stacked outputs and gradients equal each seed's own Linear."""
    backend("onednn")
    torch.manual_seed(0)
    layers = [linear.Linear(256, 256, bias=bias) for _ in range(3)]
    stacked = StackedLinear(layers, "spike")
    x = (torch.rand(3, 300, 256) < 0.2).float().requires_grad_(True)
    upstream = torch.randn(3, 300, 256)

    (stacked(x) * upstream).sum().backward()
    assert len(onednn_calls) == 3 * 3

    for k, layer in enumerate(layers):
        xk = x[k].detach().clone().requires_grad_(True)
        out = layer(xk)
        (out * upstream[k]).sum().backward()
        assert torch.equal(stacked(x[k : k + 1].detach(), seeds=slice(k, k + 1))[0], out.detach())
        assert torch.equal(x.grad[k], xk.grad)
        assert torch.equal(stacked.weight.grad[k], layer.weight.grad)
        if bias:
            assert torch.equal(stacked.bias.grad[k], layer.bias.grad)


def test_cli_rejects_bad_backend(tmp_path, capsys):
    from neurorl.cli import main

    out = tmp_path / "run"
    assert main(["train", "--linear-backend", "gpu", "--out", str(out)]) == 2
    assert not out.exists()
    assert "--linear-backend='gpu'" in capsys.readouterr().err


def test_run_records_the_backend_it_used(tmp_path, backend):
    from neurorl.experiment.training import train

    config = build_config({}, {
        "env": "neurorl/2DNav-v1", "actor": "popsan", "T": "1", "hidden": "16,16", "steps": "120", "learning_starts": "60",
        "batch_size": "16", "eval_every": "120", "eval_episodes": "1", "replay": "fifo", "tensorboard": False,
        "linear_backend": "blas",
    })
    summary = train(config, tmp_path / "run", show_progress=False)
    assert summary["linear_backend"] == "blas"
    assert linear.current_backend() == "blas"


@needs_onednn
def test_autocast_keeps_f_linear(backend, onednn_calls):
    backend("onednn")
    x, weight = torch.randn(512, 256), torch.randn(256, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = linear.linear(x, weight)
    assert y.dtype == torch.bfloat16
    assert onednn_calls == []


@needs_onednn
def test_second_derivative_is_rejected(backend):
    backend("onednn")
    x = torch.randn(512, 256, requires_grad=True)
    (grad,) = torch.autograd.grad(linear.linear(x, torch.randn(256, 256)).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate twice"):
        grad.sum().backward()
