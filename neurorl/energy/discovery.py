"""Discovery of the modules a counter hooks in a network, and the role of each.

Synaptic layers are ``nn.Linear``, ``nn.Conv1d/2d/3d`` and snnTorch's ``RecurrentOneToOne``. Each
may carry ``input_kind`` ("spike" or "dense"), and a spike layer fed with −1 spikes also carries
``signed_spikes = True``. Neurons are snnTorch ``SpikingNeuron`` modules, or any module with a
string attribute ``neuron_model`` whose output contains one element per neuron per step (its inner
snnTorch neurons are then not hooked, so nothing counts twice). Encoders carry
``input_kind = "encoder"``, ``obs_dim`` and ``pop_size``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import snntorch as snn
from torch import nn

INPUT_KINDS = ("spike", "dense", "encoder")

# Layer types whose weights are applied outside their own forward (functional calls) or that
# need per-gate rules. Hooks on them would undercount without any sign, so registration rejects them.
UNSUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.RNNBase,
    nn.RNNCellBase,
    nn.Bilinear,
    nn.MultiheadAttention,
    nn.modules.conv._ConvTransposeNd,
)

Planned = tuple[str, nn.Module, str, Optional[str]]


def validate_roots(modules: Sequence[nn.Module]) -> None:
    """Raise ValueError listing every argument that is not a module or is inside another one."""
    if not modules:
        raise ValueError("OperationCounter needs at least one module to count, got none")
    problems = []
    for index, module in enumerate(modules):
        if not isinstance(module, nn.Module):
            problems.append(f"argument {index} is a {type(module).__name__}, not a torch.nn.Module")
    for i, outer in enumerate(modules):
        for j, inner in enumerate(modules):
            if i != j and isinstance(outer, nn.Module) and isinstance(inner, nn.Module):
                if any(sub is inner for sub in outer.modules()):
                    problems.append(
                        f"argument {j} ({type(inner).__name__}) is inside argument {i} ({type(outer).__name__}), "
                        "so its samples would be counted twice. Pass only the outer module"
                    )
    if problems:
        raise ValueError("invalid OperationCounter arguments:\n  " + "\n  ".join(problems))


def plan_module(root: nn.Module, prefix: str, seen: set[int]) -> tuple[list[Planned], list[str]]:
    """Return the modules under ``root`` to hook, as (name, module, role, input kind), and problems.

    Roles: ``"neuron"`` (snnTorch neurons and modules with a string ``neuron_model``),
    ``"encoder"`` (``input_kind = "encoder"``) and ``"synapse"`` (Linear, Conv, one-to-one).
    Modules in ``seen`` are skipped and the planned ones added, so shared modules count once.
    """
    plan: list[Planned] = []
    problems: list[str] = []
    encoders: list[tuple[str, nn.Module]] = []

    for name, module in root.named_modules():
        label = prefix + (name or type(root).__name__)
        if id(module) in seen:
            continue
        seen.add(id(module))
        kind = getattr(module, "input_kind", None)

        if kind is not None and kind not in INPUT_KINDS:
            problems.append(f"{label}: input_kind={kind!r} is invalid, expected one of {', '.join(INPUT_KINDS)}")
            continue
        if is_neuron(module):
            plan.append((label, module, "neuron", None))
            if isinstance(getattr(module, "neuron_model", None), str):
                # The wrapper's output covers every step, so a snnTorch neuron it steps would count twice.
                seen.update(id(sub) for sub in module.modules() if isinstance(sub, snn.SpikingNeuron))
        elif kind == "encoder":
            missing = [attr for attr in ("obs_dim", "pop_size") if not hasattr(module, attr)]
            if missing:
                problems.append(f"{label}: encoder is missing attribute(s) {', '.join(missing)}, needed for its MAC count")
                continue
            encoders.append((label, module))
            plan.append((label, module, "encoder", "encoder"))
        elif isinstance(module, UNSUPPORTED_LAYERS):
            problems.append(
                f"{label}: {type(module).__name__} is not supported by the counter (its weights are applied "
                "outside a hookable Linear/Conv forward). Build the network from nn.Linear and nn.Conv layers"
            )
        elif isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or is_one_to_one(module):
            if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
                problems.append(f"{label}: lazy layer is not initialised yet. Run one forward pass before counting")
                continue
            if kind == "spike" and getattr(module, "signed_spikes", False):
                kind = "signed"
            plan.append((label, module, "synapse", kind))

    for label, encoder in encoders:
        for sub_name, sub in encoder.named_modules():
            if sub is not encoder and (isinstance(sub, (nn.Linear, nn.modules.conv._ConvNd)) or is_one_to_one(sub)):
                problems.append(
                    f"{label}.{sub_name}: synaptic layer inside encoder {label}. The encoder's MACs already "
                    "cover its currents, so this layer would be counted twice"
                )
    return plan, problems


# Parameter-free modules that keep their input's shape, so that every Linear layer of a chain
# of them gets the chain's rows.
SHAPE_KEEPING: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish,
    nn.Hardtanh, nn.ReLU6, nn.Dropout,
)


def dense_chain(module: nn.Module) -> list[nn.Linear] | None:
    """Return the Linear layers of a plain ``nn.Sequential`` of dense Linear layers and shape-keeping activations.

    Such a chain calls each Linear layer once per call, on the chain's rows (its input's
    elements over the first layer's ``in_features``), so its MACs follow from its input shape.
    Returns None for anything else: a subclass of ``nn.Sequential``, another child type (a Linear
    subclass qualifies only if it sets ``computes_linear_map``), a Linear layer not declared
    ``input_kind = "dense"``, or no Linear layer at all.
    """
    if type(module) is not nn.Sequential:
        return None
    layers = []
    for child in module:
        if _plain_linear(child) and getattr(child, "input_kind", None) == "dense":
            layers.append(child)
        elif type(child) not in SHAPE_KEEPING:
            return None
    return layers or None


def _plain_linear(module: nn.Module) -> bool:
    # A subclass qualifies only by declaring that its forward pass is x·Wᵀ + b on its one input.
    return type(module) is nn.Linear or (isinstance(module, nn.Linear) and getattr(type(module), "computes_linear_map", False))


def is_neuron(module: nn.Module) -> bool:
    """Return whether ``module`` is counted as a neuron population (one update per output element)."""
    return isinstance(module, snn.SpikingNeuron) or isinstance(getattr(module, "neuron_model", None), str)


def is_one_to_one(module: nn.Module) -> bool:
    """Return whether ``module`` is snnTorch's ``RecurrentOneToOne`` (``x * V``)."""
    return type(module).__name__ == "RecurrentOneToOne" and hasattr(module, "V")
