"""Energy per operation: named presets, user models from TOML, and the energy of a count.

Every figure is counts × energy per operation from one :class:`EnergyModel`, and reports name the
model they used. Compute energies are Horowitz's 45 nm figures (M. Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014). FP32 add 0.9 pJ and multiply 3.7 pJ. FP16
add 0.4 pJ and multiply 1.1 pJ. INT8 add 0.03 pJ and multiply 0.2 pJ. INT32 add 0.1 pJ and
multiply 3.1 pJ. SRAM reads cost about 10, 20 and 100 pJ per access at 8 KB, 32 KB and 1 MB.
An AC costs one add and a MAC one add plus one multiply.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from neurorl.energy.counts import OperationCounts

PJ = 1e-12
MAC_COUNTS = ("mac", "effective_mac")

# Horowitz (ISSCC 2014), 45 nm SRAM read energy per access, by array size in bytes.
SRAM_READ_PJ: tuple[tuple[int, float], ...] = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))

DEFAULT_ENERGY_MODEL = "horowitz45-fp32"
ENERGY_TERMS = ("ac", "mac", "neuron_updates", "weight_reads", "membrane_accesses")


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation of one hardware assumption.

    :param name: short identifier written into every report.
    :param ac_pj: energy of one AC (accumulate) in picojoules.
    :param mac_pj: energy of one MAC (multiply-accumulate) in picojoules.
    :param description: one line on what the model assumes.
    :param source: where the numbers come from.
    :param mac_count: which MAC count is charged: ``"mac"`` (every connection, hardware without
        zero skipping) or ``"effective_mac"`` (zero inputs and weights skipped).
    :param neuron_update_pj: compute energy of one neuron state update.
    :param weight_read_pj: energy of reading one weight, charged once per AC and per charged MAC.
    :param membrane_read_pj: energy of reading one neuron's state, charged once per update.
    :param membrane_write_pj: energy of writing one neuron's state, charged once per update.
    :param sram_bytes: size of the weight memory ``weight_read_pj`` was chosen for (information).
    """

    name: str
    ac_pj: float
    mac_pj: float
    description: str = ""
    source: str = ""
    mac_count: str = "mac"
    neuron_update_pj: float = 0.0
    weight_read_pj: float = 0.0
    membrane_read_pj: float = 0.0
    membrane_write_pj: float = 0.0
    sram_bytes: int | None = None

    def __post_init__(self) -> None:
        problems = _model_problems(self)
        if problems:
            raise ValueError(f"invalid energy model {self.name!r}:\n  " + "\n  ".join(problems))

    def breakdown_j(self, counts: OperationCounts | Mapping[str, Any]) -> dict[str, float]:
        """Return the energy of ``counts`` in joules per term (:data:`ENERGY_TERMS`)."""
        ac, mac, updates = _charged_counts(counts, self.mac_count)
        return {
            "ac": ac * self.ac_pj * PJ,
            "mac": mac * self.mac_pj * PJ,
            "neuron_updates": updates * self.neuron_update_pj * PJ,
            "weight_reads": (ac + mac) * self.weight_read_pj * PJ,
            "membrane_accesses": updates * (self.membrane_read_pj + self.membrane_write_pj) * PJ,
        }

    def energy_j(self, counts: OperationCounts | Mapping[str, Any]) -> float:
        """Return the total energy of ``counts`` in joules."""
        return sum(self.breakdown_j(counts).values())

    def as_dict(self) -> dict[str, Any]:
        """Return the model's fields as plain Python types."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EnergyModel:
        """Build a model from :meth:`as_dict` output or a TOML table.

        :raises ValueError: listing every unknown, missing or invalid field.
        """
        known = {f.name for f in fields(cls)}
        problems = [f"unknown field {key!r}" for key in sorted(set(values) - known)]
        problems += [f"missing field {key!r}" for key in ("name", "ac_pj", "mac_pj") if key not in values]
        if problems:
            raise ValueError(
                "invalid energy model definition:\n  " + "\n  ".join(problems) + f"\n  known fields: {sorted(known)}"
            )
        return cls(**dict(values))


def sram_read_pj(size_bytes: float) -> float:
    """Return the energy of one SRAM read for an array of ``size_bytes``, in picojoules.

    Interpolates Horowitz's 45 nm points (10 / 20 / 100 pJ at 8 KB / 32 KB / 1 MB) linearly in
    log(size)-log(energy). Outside that range the cost follows the square root of the size, the
    slope between 8 KB and 32 KB (wire length grows with the square root of array area).
    """
    if not math.isfinite(size_bytes) or size_bytes <= 0:
        raise ValueError(f"SRAM size must be a positive number of bytes, got {size_bytes!r}")
    (s0, e0), (s1, e1), (s2, e2) = SRAM_READ_PJ
    if size_bytes <= s0:
        return e0 * math.sqrt(size_bytes / s0)
    if size_bytes >= s2:
        return e2 * math.sqrt(size_bytes / s2)
    low, high = ((s0, e0), (s1, e1)) if size_bytes <= s1 else ((s1, e1), (s2, e2))
    slope = math.log(high[1] / low[1]) / math.log(high[0] / low[0])
    return low[1] * (size_bytes / low[0]) ** slope


def memory_inclusive_model(
    weight_sram_bytes: int = 32 * 1024,
    membrane_sram_bytes: int = 8 * 1024,
    *,
    name: str | None = None,
) -> EnergyModel:
    """Build the memory-inclusive FP32 model for given weight and membrane memory sizes.

    Assumptions, after the memory-inclusive estimates of Lemaire et al. (2022):

    * Compute as ``horowitz45-fp32``, 0.9 pJ per AC and 4.6 pJ per MAC (every connection).
    * One weight read per AC and per MAC from an SRAM of ``weight_sram_bytes``, at
      :func:`sram_read_pj` of that size.
    * One membrane-state read and one write per neuron update, from an SRAM of
      ``membrane_sram_bytes``.
    * One neuron update computes β·v + I (one MAC) and the threshold test (one add), so it costs
      4.6 + 0.9 = 5.5 pJ.
    * Partial sums stay in registers within a time step (output-stationary), so an AC does not
      read or write the target's membrane.

    NOTE: input activation reads, spike routing, addressing and ANN activation writes are not
    charged. A spiking-versus-ANN comparison is fair only as far as those terms are small.
    """
    weight_pj = sram_read_pj(weight_sram_bytes)
    membrane_pj = sram_read_pj(membrane_sram_bytes)
    label = name or f"memory-inclusive-{_size_label(weight_sram_bytes)}"
    return EnergyModel(
        name=label,
        ac_pj=0.9,
        mac_pj=4.6,
        description=(
            f"45 nm FP32 compute plus a {weight_pj:.3g} pJ weight read per AC/MAC "
            f"({_size_label(weight_sram_bytes)} SRAM) and a {membrane_pj:.3g} pJ membrane read and write "
            f"per neuron update ({_size_label(membrane_sram_bytes)} SRAM)"
        ),
        source="Horowitz ISSCC 2014 (45 nm operation and SRAM energies), memory terms after Lemaire et al. 2022",
        neuron_update_pj=5.5,
        weight_read_pj=weight_pj,
        membrane_read_pj=membrane_pj,
        membrane_write_pj=membrane_pj,
        sram_bytes=int(weight_sram_bytes),
    )


def _horowitz(name: str, add_pj: float, mul_pj: float, precision: str) -> EnergyModel:
    return EnergyModel(
        name=name,
        ac_pj=add_pj,
        mac_pj=round(add_pj + mul_pj, 6),
        description=f"compute only, 45 nm {precision}: AC = add {add_pj} pJ, MAC = add + multiply {mul_pj} pJ",
        source="Horowitz, ISSCC 2014, 45 nm",
    )


def _builtin_models() -> dict[str, EnergyModel]:
    models = [
        _horowitz("horowitz45-fp32", 0.9, 3.7, "FP32"),
        _horowitz("horowitz45-fp16", 0.4, 1.1, "FP16"),
        _horowitz("horowitz45-int32", 0.1, 3.1, "INT32"),
        _horowitz("horowitz45-int8", 0.03, 0.2, "INT8"),
        memory_inclusive_model(32 * 1024, name="memory-inclusive"),
        memory_inclusive_model(8 * 1024, name="memory-inclusive-8kb"),
        memory_inclusive_model(1024 * 1024, name="memory-inclusive-1mb"),
    ]
    return {model.name: model for model in models}


def get_energy_model(name: str = DEFAULT_ENERGY_MODEL) -> EnergyModel:
    """Return the preset called ``name`` (see :func:`list_energy_models`)."""
    if name not in ENERGY_MODELS:
        raise ValueError(
            f"unknown energy model {name!r}, expected one of {', '.join(ENERGY_MODELS)} "
            "or load your own with load_energy_model(path)"
        )
    return ENERGY_MODELS[name]


def list_energy_models() -> list[dict[str, str]]:
    """Return every preset as ``{"name", "description", "source"}``, the default first."""
    return [{"name": m.name, "description": m.description, "source": m.source} for m in ENERGY_MODELS.values()]


def load_energy_model(path: str | Path) -> EnergyModel:
    """Load a user energy model from a TOML file.

    The file contains the :class:`EnergyModel` fields at top level or in an ``[energy_model]``
    table, for example ``name = "my-chip"``, ``ac_pj = 0.5``, ``mac_pj = 2.0``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"energy model file not found: {path}")
    with path.open("rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"energy model file {path} is not valid TOML: {error}") from error
    table = data.get("energy_model", data)
    if not isinstance(table, dict):
        raise ValueError(f"energy model file {path}: [energy_model] must be a table, got {type(table).__name__}")
    try:
        return EnergyModel.from_dict(table)
    except (TypeError, ValueError) as error:
        raise ValueError(f"energy model file {path}: {error}") from error


def _charged_counts(counts: OperationCounts | Mapping[str, Any], mac_count: str) -> tuple[float, float, float]:
    if isinstance(counts, OperationCounts):
        return float(counts.ac), float(getattr(counts, mac_count)), float(counts.total_neuron_updates)
    if not isinstance(counts, Mapping):
        raise TypeError(f"counts must be OperationCounts or a mapping, got {type(counts).__name__}")
    missing = [key for key in ("ac", mac_count) if key not in counts]
    if missing:
        raise ValueError(f"counts mapping is missing {missing}, it has {sorted(counts)}")
    updates = counts.get("neuron_updates", 0)
    total_updates = sum(updates.values()) if isinstance(updates, Mapping) else updates
    return float(counts["ac"]), float(counts[mac_count]), float(total_updates)


def _model_problems(model: EnergyModel) -> list[str]:
    problems = []
    if not isinstance(model.name, str) or not model.name.strip():
        problems.append(f"name must be a non-empty string, got {model.name!r}")
    for key in ("ac_pj", "mac_pj", "neuron_update_pj", "weight_read_pj", "membrane_read_pj", "membrane_write_pj"):
        value = getattr(model, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.append(f"{key} must be a finite number >= 0 (picojoules), got {value!r}")
    if model.mac_count not in MAC_COUNTS:
        problems.append(f"mac_count must be one of {MAC_COUNTS}, got {model.mac_count!r}")
    if model.sram_bytes is not None and (isinstance(model.sram_bytes, bool) or not isinstance(model.sram_bytes, int) or model.sram_bytes <= 0):
        problems.append(f"sram_bytes must be a positive integer or absent, got {model.sram_bytes!r}")
    return problems


def _size_label(size_bytes: int) -> str:
    if size_bytes >= 1024 * 1024 and size_bytes % (1024 * 1024) == 0:
        return f"{size_bytes // (1024 * 1024)}mb"
    if size_bytes % 1024 == 0:
        return f"{size_bytes // 1024}kb"
    return f"{size_bytes}b"


ENERGY_MODELS: dict[str, EnergyModel] = _builtin_models()
