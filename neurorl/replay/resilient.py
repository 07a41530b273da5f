"""Resilient experience replay (Xu, Chen, Liu, Lin, Li, Wang, IEEE TPAMI 48(4), 2026).

The buffer grows without a fixed capacity. Every check_interval environment steps (after the
actor update, before the target update) it:

1. draws D' (check_batch transitions) uniformly without replacement from the live transitions
   with its own seeded generator: states s_i and stored actions a_i;
2. predicts â_i = π(s_i) with the caller's policy;
3. builds a scipy KD-tree on the stored points p_i = β·(s_i ⊕ a_i);
4. finds the nearest stored point of each query q_i = β·(s_i ⊕ â_i) and reduces the distances
   to Dis (sum, as Xu et al. write it, or mean);
5. drops the oldest ⌊κ·N⌋ transitions (FIFO) when Dis > threshold, never going below min_size.

The direct measure Σ‖β(â_i − a_i)‖ is always computed beside it and can drive the decision
instead (measure="direct") for the ablation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from neurorl.replay._validation import (
    choice_problem,
    first_non_finite,
    is_int,
    is_real,
    positive_int_problem,
)
from neurorl.replay.discrepancy import direct_discrepancy, kd_tree_discrepancy
from neurorl.replay.moments import LiveMoments
from neurorl.replay.samplers import PrioritizedSampler, UniformSampler
from neurorl.replay.strategies import ReplayBuffer, prioritized_problems

BETA_MODES = ("constant", "standardize")
REDUCTIONS = ("sum", "mean")
MEASURES = ("kdtree", "direct")
SAMPLERS = ("uniform", "prioritized")


@dataclass
class CheckRecord:
    """Outcome of one resilient check, one row of the run's discrepancy log.

    Attributes:
        step: Environment step of the check.
        dis: KD-tree Dis.
        direct_dis: Direct Dis, Σ‖β(â_i − a_i)‖ (or its mean), never below dis.
        threshold: Threshold the deciding measure was compared with.
        removed: Transitions dropped by this check.
        size_before: Buffer size before the check.
        size_after: Buffer size after the check.
        check_batch: |D'| actually used.
        point_dim: Dimension of a point s ⊕ a (obs_dim + act_dim).
        measure: Measure that decided the shrink, "kdtree" or "direct".
    """

    step: int
    dis: float
    direct_dis: float
    threshold: float
    removed: int
    size_before: int
    size_after: int
    check_batch: int
    point_dim: int
    measure: str

    def as_row(self) -> dict[str, Any]:
        """Return the record as a flat dict for CSV logging."""
        return asdict(self)


class ResilientReplay(ReplayBuffer):
    """Growing buffer trimmed by a periodic policy-buffer discrepancy check.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        seed: Seed of the buffer's generator (sampling and D'); pass the run seed.
        check_interval: Δs, environment steps between checks.
        check_batch: |D'|, transitions per check; at most min_size.
        threshold: Shrink when the deciding Dis exceeds this value (>= 0).
        kappa: κ, fraction of the buffer dropped per shrink, in (0, 1).
        min_size: A shrink never leaves fewer transitions than this.
        beta: β, a positive scalar (or one positive value per point dimension in "constant"
            mode) that scales the points.
        beta_mode: "constant" scales by beta; "standardize" divides each dimension by the live
            buffer's standard deviation (at least std_eps) and multiplies by beta.
        reduction: "sum" or "mean" of the distances. A threshold of 0.2 on a sum over 256
            distances is passed at almost every check; "mean" makes it independent of |D'|.
        measure: "kdtree" (nearest stored point) or "direct" (own stored action) decides.
        sampler: "uniform" or "prioritized" sampling of training batches.
        alpha: Priority exponent for sampler="prioritized".
        beta0: Starting importance exponent for sampler="prioritized", annealed to 1.
        beta_steps: Added transitions over which the importance exponent reaches 1.
        priority_eps: Constant added to |TD error| for priorities.
        std_eps: Lower bound on the standard deviations of beta_mode="standardize".
        max_bytes: Optional memory cap in bytes; past it the oldest transitions are evicted.
        compact: Store each observation once.
    """

    kind = "resilient"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        seed: int,
        check_interval: int = 1000,
        check_batch: int = 256,
        threshold: float = 0.2,
        kappa: float = 0.10,
        min_size: int = 1000,
        beta: float | np.ndarray = 1.0,
        beta_mode: str = "constant",
        reduction: str = "sum",
        measure: str = "kdtree",
        sampler: str = "uniform",
        alpha: float = 0.6,
        beta0: float = 0.4,
        beta_steps: int = 1_000_000,
        priority_eps: float = 1e-6,
        std_eps: float = 1e-6,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        problems = _resilient_problems(
            obs_dim, act_dim, check_interval, check_batch, threshold, kappa, min_size, beta,
            beta_mode, reduction, measure, sampler, std_eps,
        )
        prioritized = sampler == "prioritized"
        if prioritized:
            problems += prioritized_problems(alpha, beta0, beta_steps, priority_eps)

        def make_sampler() -> UniformSampler | PrioritizedSampler:
            if prioritized:
                return PrioritizedSampler(alpha, beta0, beta_steps, priority_eps)
            return UniformSampler()

        super().__init__(
            obs_dim, act_dim, seed=seed, capacity=None, max_bytes=max_bytes, compact=compact,
            make_sampler=make_sampler,
            extra_bytes_per_row=PrioritizedSampler.extra_bytes_per_row if prioritized else 0,
            problems=problems,
        )

        self.check_interval = int(check_interval)
        self.check_batch = int(check_batch)
        self.threshold = float(threshold)
        self.kappa = float(kappa)
        self.min_size = int(min_size)
        self.beta = np.asarray(beta, dtype=np.float64) if np.ndim(beta) else float(beta)
        self.beta_mode = beta_mode
        self.reduction = reduction
        self.measure = measure
        self.std_eps = float(std_eps)
        self._moments = LiveMoments(self._storage) if beta_mode == "standardize" else None

        self.checks_run = 0
        self.shrinks = 0
        self.total_removed = 0
        self.last_record: CheckRecord | None = None

    def options(self) -> dict[str, Any]:
        """Return the constructor options besides obs_dim, act_dim and seed."""
        options = {key: value for key, value in super().options().items() if key != "capacity"}
        sampler_options = self._sampler.options() if isinstance(
            self._sampler, PrioritizedSampler) else {}
        beta = self.beta.tolist() if isinstance(self.beta, np.ndarray) else self.beta
        return {
            **options,
            "check_interval": self.check_interval,
            "check_batch": self.check_batch,
            "threshold": self.threshold,
            "kappa": self.kappa,
            "min_size": self.min_size,
            "beta": beta,
            "beta_mode": self.beta_mode,
            "reduction": self.reduction,
            "measure": self.measure,
            "sampler": self._sampler.name,
            "std_eps": self.std_eps,
            **sampler_options,
        }

    # ------------------------------------------------------------------ check

    def after_update(
        self, policy: Callable[[np.ndarray], np.ndarray], step: int
    ) -> CheckRecord | None:
        """Run the check when step is a multiple of check_interval and len >= check_batch.

        Returns the CheckRecord of the check, or None when no check was due.
        """
        if not is_int(step) or step < 0:
            raise ValueError(f"step must be an int >= 0 (the environment step), got {step!r}")
        if step % self.check_interval != 0 or len(self) < self.check_batch:
            return None
        return self.run_check(policy, step)

    def run_check(self, policy: Callable[[np.ndarray], np.ndarray], step: int) -> CheckRecord:
        """Run one check now, with |D'| = min(check_batch, len), and shrink if it fails."""
        size_before = len(self)
        if size_before == 0:
            raise ValueError("cannot run a resilient check on an empty buffer; add transitions")

        batch = min(self.check_batch, size_before)
        positions = self._rng.choice(size_before, size=batch, replace=False)
        states, stored_actions = self._storage.states_actions(self._storage.ids_at(positions))
        predicted = self._predict(policy, states)

        scale = self.point_scale()
        dis = kd_tree_discrepancy(states, stored_actions, predicted, scale, self.reduction)
        direct_dis = direct_discrepancy(states, stored_actions, predicted, scale, self.reduction)

        deciding = dis if self.measure == "kdtree" else direct_dis
        removed = self.shrink() if deciding > self.threshold else 0

        record = CheckRecord(
            step=int(step),
            dis=dis,
            direct_dis=direct_dis,
            threshold=self.threshold,
            removed=removed,
            size_before=size_before,
            size_after=len(self),
            check_batch=batch,
            point_dim=self.obs_dim + self.act_dim,
            measure=self.measure,
        )
        self.checks_run += 1
        self.last_record = record
        return record

    def shrink(self) -> int:
        """Drop the oldest ⌊κ·N⌋ transitions without going below min_size; return the count."""
        size = len(self)
        # Rounding to 9 decimals first keeps e.g. κ = 0.29, N = 100 at 29, not 28.999... -> 28.
        count = math.floor(round(self.kappa * size, 9))
        count = max(0, min(count, size - self.min_size))
        removed = self._storage.drop_oldest(count)
        if removed:
            self.shrinks += 1
            self.total_removed += removed
        return removed

    def point_scale(self) -> float | np.ndarray:
        """Return β as used for the points: the scalar or array, or beta / std per dimension."""
        if self._moments is None:
            return self.beta
        return self.beta / np.maximum(self._moments.std(), self.std_eps)

    def _predict(self, policy: Callable[[np.ndarray], np.ndarray], states: np.ndarray) -> np.ndarray:
        # The policy gets a copy so that a policy normalising in place cannot alter D'.
        output = policy(states.copy())
        try:
            actions = np.asarray(output, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"policy output could not be converted to an array: {error}") from error

        expected = (len(states), self.act_dim)
        if self.act_dim == 1 and actions.shape == (len(states),):
            actions = actions[:, None]
        if actions.shape != expected:
            raise ValueError(
                f"policy returned shape {actions.shape} for {len(states)} states, expected "
                f"{expected}; the policy must map states [N, obs_dim] to actions [N, act_dim]"
            )
        if not np.isfinite(actions).all():
            raise ValueError(first_non_finite("policy output", actions)
                             + "; Dis cannot be computed from non-finite actions")
        return actions

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return the buffer state plus the check counters and last record."""
        state = super().state_dict()
        state["resilient"] = {
            "checks_run": self.checks_run,
            "shrinks": self.shrinks,
            "total_removed": self.total_removed,
            "last_record": None if self.last_record is None else self.last_record.as_row(),
            "moments": None if self._moments is None else self._moments.state_dict(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict`, counters included."""
        super().load_state_dict(state)
        counters = state["resilient"]
        self.checks_run = int(counters["checks_run"])
        self.shrinks = int(counters["shrinks"])
        self.total_removed = int(counters["total_removed"])
        last = counters["last_record"]
        self.last_record = None if last is None else CheckRecord(**_plain_record(last))
        if self._moments is not None:
            self._moments.load_state_dict(counters["moments"])


def _plain_record(row: dict[str, Any]) -> dict[str, Any]:
    types = {"step": int, "removed": int, "size_before": int, "size_after": int,
             "check_batch": int, "point_dim": int, "dis": float, "direct_dis": float,
             "threshold": float, "measure": str}
    return {key: types[key](value) for key, value in row.items()}


def _resilient_problems(
    obs_dim: Any,
    act_dim: Any,
    check_interval: Any,
    check_batch: Any,
    threshold: Any,
    kappa: Any,
    min_size: Any,
    beta: Any,
    beta_mode: Any,
    reduction: Any,
    measure: Any,
    sampler: Any,
    std_eps: Any,
) -> list[str | None]:
    problems: list[str | None] = [
        positive_int_problem("check_interval", check_interval),
        positive_int_problem("check_batch", check_batch),
        positive_int_problem("min_size", min_size),
        choice_problem("beta_mode", beta_mode, BETA_MODES),
        choice_problem("reduction", reduction, REDUCTIONS),
        choice_problem("measure", measure, MEASURES),
        choice_problem("sampler", sampler, SAMPLERS),
    ]
    if not (is_real(kappa) and 0.0 < kappa < 1.0):
        problems.append(f"kappa must be a number in (0, 1) (0.10 drops 10% per shrink), "
                        f"got {kappa!r}")
    if not (is_real(threshold) and math.isfinite(threshold) and threshold >= 0.0):
        problems.append(f"threshold must be a finite number >= 0, got {threshold!r}")
    if not (is_real(std_eps) and math.isfinite(std_eps) and std_eps > 0.0):
        problems.append(f"std_eps must be a finite number > 0, got {std_eps!r}")
    if is_int(check_batch) and is_int(min_size) and check_batch > min_size:
        problems.append(
            f"check_batch ({check_batch}) must not exceed min_size ({min_size}), or a check "
            "could draw D' from fewer transitions than it needs; lower check_batch or raise "
            "min_size"
        )
    problems.append(_beta_problem(beta, beta_mode, obs_dim, act_dim))
    return problems


def _beta_problem(beta: Any, beta_mode: Any, obs_dim: Any, act_dim: Any) -> str | None:
    if is_real(beta) and math.isfinite(beta) and beta > 0:
        return None
    if isinstance(beta, (bool, np.bool_)) or np.ndim(beta) == 0:
        return f"beta must be a finite number > 0, got {beta!r}"
    if beta_mode != "constant":
        return f"beta must be a scalar with beta_mode={beta_mode!r}, got an array"
    point_dim = obs_dim + act_dim if is_int(obs_dim) and is_int(act_dim) else None
    array = np.asarray(beta, dtype=np.float64)
    if array.shape != (point_dim,) or not np.all(np.isfinite(array) & (array > 0)):
        return (f"beta must be a number > 0 or an array of obs_dim + act_dim = {point_dim} "
                f"positive values, got shape {array.shape}")
    return None
