"""Planar geometry for the 2DNav tasks: ray casting, collision resolution and layout sampling.

Every function works on numpy arrays in arena units. The arena is the square
[-half_size, half_size]^2 and obstacles are discs given as centres (k, 2) and radii (k,).
"""

from __future__ import annotations

import numpy as np

# Rejection sampling draws candidates in batches so that a crowded layout costs a few
# vectorised passes instead of thousands of Python iterations.
_CANDIDATE_BATCH = 64
_MAX_SAMPLING_BATCHES = 200


def ray_directions(n_rays: int) -> np.ndarray:
    """Return n_rays unit vectors (n_rays, 2) at evenly spaced angles, the first along +x."""
    angles = 2.0 * np.pi * np.arange(n_rays) / max(n_rays, 1)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


class RaySensor:
    """Range sensors at fixed world-frame directions, read against the arena walls and discs.

    :param n_rays: number of rays, at evenly spaced angles starting along +x
    :param half_size: half the side of the square arena
    :param max_range: distance at which every reading is capped
    """

    def __init__(self, n_rays: int, half_size: float, max_range: float) -> None:
        self.directions = ray_directions(n_rays)
        self.half_size = float(half_size)
        self.max_range = float(max_range)

        # The ray leaves the square through the wall that it reaches first, so its exit distance
        # is the smaller of the per-axis exit distances. A zero component never exits on that
        # axis: its inverse is +inf and its wall is +half_size, so (wall - origin) > 0 times
        # the inverse gives +inf for any origin inside the arena.
        with np.errstate(divide="ignore"):
            self._inverse_directions = np.where(self.directions == 0.0, np.inf, 1.0 / self.directions)
        self._walls = np.where(self.directions >= 0.0, self.half_size, -self.half_size)

    def read(self, origin: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """Return the distance (n_rays,) along each ray from origin to the first wall or disc.

        Readings are capped at max_range. An origin inside a disc reads 0 on every ray, since
        the sensor is then covered. The origin must lie inside the arena.
        """
        distances = ((self._walls - origin) * self._inverse_directions).min(axis=1)

        if len(radii) > 0:
            offset = origin - centres
            squared_gap = np.einsum("ij,ij->i", offset, offset) - radii * radii
            if squared_gap.min() <= 0.0:
                return np.zeros(len(self.directions))

            # For an origin outside the disc, |origin + t*u - c| = r has its smaller root at
            # t = -b - sqrt(b^2 - squared_gap) with b = u.(origin - c). It is ahead only if b < 0.
            b = self.directions @ offset.T
            discriminant = b * b - squared_gap
            hit = (discriminant >= 0.0) & (b < 0.0)
            entry = np.where(hit, -b - np.sqrt(np.maximum(discriminant, 0.0)), np.inf)
            distances = np.minimum(distances, entry.min(axis=1))

        return np.minimum(distances, self.max_range)


def resolve_collisions(
    position: np.ndarray,
    velocity: np.ndarray,
    agent_radius: float,
    centres: np.ndarray,
    radii: np.ndarray,
    half_size: float,
    iterations: int = 3,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Push a disc agent out of the walls and discs and cancel its velocity into them.

    Each iteration projects the agent onto the boundary of every disc that it overlaps, then
    clips it into the arena. Repeating the pass settles the rare case of two touching discs.
    Returns the new position, the new velocity and whether any contact happened.
    """
    limit = half_size - agent_radius
    if not _in_contact(position, agent_radius, centres, radii, limit):
        return position.copy(), velocity.copy(), False

    position = position.copy()
    velocity = velocity.copy()
    collided = False

    for _ in range(iterations):
        moved = False

        if len(radii) > 0:
            offset = position[None, :] - centres
            distance = np.sqrt(np.sum(offset**2, axis=1))
            for index in np.flatnonzero(distance < radii + agent_radius):
                normal = _unit_normal(offset[index], distance[index])
                position = centres[index] + normal * (radii[index] + agent_radius)
                velocity = _remove_inward_component(velocity, normal)
                moved = True

        outside = np.abs(position) > limit
        if outside.any():
            velocity = np.where(outside & (np.sign(velocity) == np.sign(position)), 0.0, velocity)
            position = np.clip(position, -limit, limit)
            moved = True

        collided = collided or moved
        if not moved:
            break

    return position, velocity, collided


def _in_contact(
    position: np.ndarray, agent_radius: float, centres: np.ndarray, radii: np.ndarray, limit: float
) -> bool:
    if abs(position[0]) > limit or abs(position[1]) > limit:
        return True
    if len(radii) == 0:
        return False
    offset = position - centres
    reach = radii + agent_radius
    return bool((np.einsum("ij,ij->i", offset, offset) < reach * reach).any())


def _unit_normal(offset: np.ndarray, distance: float) -> np.ndarray:
    # An agent exactly at a disc centre has no outward direction, so it leaves along +x.
    if distance < 1e-12:
        return np.array([1.0, 0.0])
    return offset / distance


def _remove_inward_component(velocity: np.ndarray, normal: np.ndarray) -> np.ndarray:
    inward = float(velocity @ normal)
    if inward < 0.0:
        return velocity - inward * normal
    return velocity


def sample_discs(
    rng: np.random.Generator,
    count: int,
    radius_range: tuple[float, float],
    half_size: float,
    gap: float,
    centres: np.ndarray,
    radii: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Place count new discs at least gap apart from each other, the given discs and the walls.

    Raises RuntimeError when the arena is too crowded to place a disc after many draws.
    Returns the centres and radii of all discs, the given ones first.
    """
    centres = centres.reshape(-1, 2).copy()
    radii = radii.reshape(-1).copy()

    for _ in range(count):
        candidate_radii = rng.uniform(radius_range[0], radius_range[1], size=_CANDIDATE_BATCH)
        margin = candidate_radii + gap
        candidate = _sample_free_points(
            rng,
            lambda batch: (margin[:, None] - half_size)
            + batch * 2.0 * (half_size - margin[:, None]),
            lambda points: _clear_of_discs(points, centres, radii, candidate_radii + gap),
            description=f"an obstacle (placed {len(radii)} so far)",
        )
        centres = np.vstack([centres, candidate[1][None, :]])
        radii = np.append(radii, candidate_radii[candidate[0]])

    return centres, radii


def sample_free_point(
    rng: np.random.Generator,
    half_size: float,
    clearance: float,
    centres: np.ndarray,
    radii: np.ndarray,
    away_from: np.ndarray | None = None,
    min_distance: float = 0.0,
) -> np.ndarray:
    """Draw a point at least clearance from the walls and discs, and min_distance from away_from.

    Raises RuntimeError when no such point is found after many draws.
    """
    clearances = np.full(_CANDIDATE_BATCH, clearance)

    def accept(points: np.ndarray) -> np.ndarray:
        ok = _clear_of_discs(points, centres, radii, clearances)
        if away_from is not None:
            ok &= np.linalg.norm(points - away_from[None, :], axis=1) >= min_distance
        return ok

    _, point = _sample_free_points(
        rng,
        lambda batch: (clearance - half_size) + batch * 2.0 * (half_size - clearance),
        accept,
        description="a free start or goal position",
    )
    return point


def _sample_free_points(rng, scale, accept, description: str) -> tuple[int, np.ndarray]:
    for _ in range(_MAX_SAMPLING_BATCHES):
        points = scale(rng.uniform(0.0, 1.0, size=(_CANDIDATE_BATCH, 2)))
        valid = np.flatnonzero(accept(points))
        if len(valid) > 0:
            return int(valid[0]), points[valid[0]]

    raise RuntimeError(
        f"could not place {description} after {_MAX_SAMPLING_BATCHES * _CANDIDATE_BATCH} random draws; "
        "use fewer or smaller obstacles or a larger arena"
    )


def _clear_of_discs(
    points: np.ndarray, centres: np.ndarray, radii: np.ndarray, clearances: np.ndarray
) -> np.ndarray:
    if len(radii) == 0:
        return np.ones(len(points), dtype=bool)
    distance = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return np.all(distance >= radii[None, :] + clearances[:, None], axis=1)


def bounce_discs(
    centres: np.ndarray,
    velocities: np.ndarray,
    radii: np.ndarray,
    static_centres: np.ndarray,
    static_radii: np.ndarray,
    half_size: float,
    dt: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advance moving discs by dt with mirror reflection off the walls, static discs and each other.

    Speeds are preserved, because every reflection flips only the normal velocity component.
    Returns new centres and velocities.
    """
    centres = centres + velocities * dt
    velocities = velocities.copy()

    limit = half_size - radii[:, None]
    outside = np.abs(centres) > limit
    velocities = np.where(outside & (np.sign(velocities) == np.sign(centres)), -velocities, velocities)
    centres = np.clip(centres, -limit, limit)

    # Rows are the moving discs, columns every disc (static first); a disc never hits itself.
    all_centres = np.vstack([static_centres, centres])
    all_radii = np.concatenate([static_radii, radii])
    offset = centres[:, None, :] - all_centres[None, :, :]
    squared_distance = np.einsum("ijk,ijk->ij", offset, offset)
    reach = radii[:, None] + all_radii[None, :]
    overlap = squared_distance < reach * reach
    overlap[np.arange(len(radii)), len(static_radii) + np.arange(len(radii))] = False

    for i, j in zip(*np.nonzero(overlap)):
        normal = _unit_normal(offset[i, j], float(np.sqrt(squared_distance[i, j])))
        inward = float(velocities[i] @ normal)
        if inward < 0.0:
            velocities[i] = velocities[i] - 2.0 * inward * normal

    return centres, velocities
