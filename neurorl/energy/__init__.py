"""Operation counting and energy accounting: ACs, MACs and neuron updates of every forward pass,
energy models per operation, an energy ledger by phase, and the KD-tree cost model."""

from neurorl.energy.counting import (
    INPUT_KINDS,
    PHASES,
    OperationCounter,
    OperationCounts,
    count_operations,
)
from neurorl.energy.kdtree import kdtree_operation_counts, measure_kdtree_operations
from neurorl.energy.ledger import (
    EnergyLedger,
    backward_estimate,
    kdtree_counts_as_operations,
    return_per_joule,
)
from neurorl.energy.models import (
    DEFAULT_ENERGY_MODEL,
    EnergyModel,
    get_energy_model,
    list_energy_models,
    load_energy_model,
    memory_inclusive_model,
    sram_read_pj,
)

__all__ = [
    "DEFAULT_ENERGY_MODEL",
    "EnergyLedger",
    "EnergyModel",
    "INPUT_KINDS",
    "OperationCounter",
    "OperationCounts",
    "PHASES",
    "backward_estimate",
    "count_operations",
    "get_energy_model",
    "kdtree_counts_as_operations",
    "kdtree_operation_counts",
    "list_energy_models",
    "load_energy_model",
    "measure_kdtree_operations",
    "memory_inclusive_model",
    "return_per_joule",
    "sram_read_pj",
]
