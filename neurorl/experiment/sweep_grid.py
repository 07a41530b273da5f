"""Sweep files: parse SWEEP.toml, validate every grid point, name run directories, group seeds.

A sweep file has two tables of ``neurorl train`` options and one optional table of sweep
settings. ``[base]`` sets options shared by every run (names as on the command line, dashes or
underscores). ``[grid]`` maps options to lists of values; the sweep runs the Cartesian product of
the lists, in the order the file lists them. ``[sweep]`` holds settings of the sweep itself
(:data:`SWEEP_SETTINGS`)::

    [base]
    env = "neurorl/2DNav-v1"
    steps = 2000

    [grid]
    T = [1, 2]
    replay = ["fifo", "resilient"]
    seed = [0, 1]

    [sweep]
    batch-seeds = true

Every grid point goes through :func:`neurorl.config.build_config` before anything runs, and all
problems are reported together in one :class:`~neurorl.config.ConfigError`.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurorl.config import FIELD_TYPES, ConfigError, TrainConfig, build_config, normalize_key

SEED_OPTION = "seed"
TABLES = ("base", "grid")
SETTINGS_TABLE = "sweep"
# Settings of [sweep]: name → description. Each is a boolean, and run_sweep's arguments override it.
SWEEP_SETTINGS = {
    "batch_seeds": "train the seeds of each seed group in one multi-seed process (default true)",
}
# The sweep chooses each run's directory, so a file may not set it.
RESERVED_OPTIONS = ("out",)
MAX_NAME_LENGTH = 160
MAX_LISTED_POINTS = 3
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+=-]+")


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its run name, its grid values and its validated configuration."""

    name: str
    values: dict[str, Any]
    config: TrainConfig


@dataclass(frozen=True)
class SeedGroup:
    """Grid points that differ only in their seed, in grid order."""

    name: str
    values: dict[str, Any]
    points: tuple[SweepPoint, ...]

    @property
    def seeds(self) -> list[int]:
        return [point.config.seed for point in self.points]


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the file's ``[base]`` and ``[grid]`` tables, its ``[sweep]`` settings and every grid point.

    ``settings`` contains only the settings the file sets, by their underscore names.
    """

    path: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    points: tuple[SweepPoint, ...] = field(default_factory=tuple)
    settings: dict[str, Any] = field(default_factory=dict)


def plan_sweep(path: str | Path) -> SweepPlan:
    """Read a sweep file and validate every grid point; raise one ConfigError listing every problem."""
    path = Path(path)
    raw = _read_toml(path)
    base, grid, problems = _parse_tables(raw)
    settings, setting_problems = _parse_settings(raw.get(SETTINGS_TABLE, {}))
    problems += setting_problems

    points: list[SweepPoint] = []
    if grid:
        points, point_problems = _build_points(base, grid)
        problems += point_problems
    if problems:
        raise ConfigError([f"{path}: {problem}" for problem in problems])
    return SweepPlan(path=path, base=base, grid=grid, points=tuple(points), settings=settings)


def run_name(values: dict[str, Any]) -> str:
    """Name a run directory from its grid values, e.g. ``T=1__replay=fifo__seed=0``.

    Characters other than letters, digits and ``._+=-`` become ``-`` (env ids contain ``/``).
    A name longer than 160 characters is cut and ends with a hash of the full name, so it stays
    unique and fits in a file name.
    """
    if not values:
        return "base"
    name = "__".join(f"{_safe(key)}={_safe(_format_value(value))}" for key, value in values.items())
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
    return f"{name[:MAX_NAME_LENGTH - 14]}__{digest}"


def group_by_seed(points: list[SweepPoint] | tuple[SweepPoint, ...]) -> list[SeedGroup]:
    """Group grid points that differ only in their seed, keeping the grid order.

    Every point of a group has the same configuration apart from ``seed``, so the sweep can train
    a group's seeds in one process with :func:`neurorl.experiment.multiseed.train_seeds`. Without
    ``seed`` in the grid every group has one point.
    """
    groups: dict[str, list[SweepPoint]] = {}
    group_values: dict[str, dict[str, Any]] = {}
    for point in points:
        values = {key: value for key, value in point.values.items() if key != SEED_OPTION}
        name = run_name(values)
        groups.setdefault(name, []).append(point)
        group_values[name] = values
    return [SeedGroup(name=name, values=group_values[name], points=tuple(members)) for name, members in groups.items()]


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError([f"sweep file {str(path)!r} not found; give the path of a SWEEP.toml file"])
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: invalid TOML ({error})"]) from None


def _parse_tables(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]], list[str]]:
    """Split the file into normalized ``base`` and ``grid`` tables and list their structural problems."""
    problems = [
        f"[{key}]: unknown table; a sweep file has only [base], [grid] and [{SETTINGS_TABLE}]"
        for key in raw
        if key not in (*TABLES, SETTINGS_TABLE)
    ]
    tables: dict[str, dict[str, Any]] = {}
    for table in TABLES:
        value = raw.get(table, {})
        if not isinstance(value, dict):
            problems.append(f"{table} = {value!r}: expected a table [{table}]")
            value = {}
        entries, option_problems = _known_options(table, value)
        tables[table] = entries
        problems += option_problems

    base, grid = tables["base"], {}
    for name, values in tables["grid"].items():
        value_problems = _grid_value_problems(name, values)
        problems += value_problems
        if not value_problems:
            grid[name] = list(values)

    for name in sorted(set(base) & set(tables["grid"])):
        problems.append(f"{name!r} is set in both [base] and [grid]; keep it in one table")
    if not tables["grid"]:
        problems.append("[grid] is missing or empty; add at least one option with a list of values, e.g. seed = [0, 1, 2]")
    return base, grid, problems


def _parse_settings(table: Any) -> tuple[dict[str, Any], list[str]]:
    """Read the [sweep] table: known boolean settings only, with dashes or underscores."""
    if not isinstance(table, dict):
        return {}, [f"{SETTINGS_TABLE} = {table!r}: expected a table [{SETTINGS_TABLE}]"]
    settings: dict[str, Any] = {}
    seen: set[str] = set()
    problems = []
    for key, value in table.items():
        name = normalize_key(key)
        if name not in SWEEP_SETTINGS:
            known = ", ".join(option.replace("_", "-") for option in SWEEP_SETTINGS)
            problems.append(f"[{SETTINGS_TABLE}] {key}: unknown setting; the settings are {known}")
            continue
        if name in seen:
            problems.append(f"[{SETTINGS_TABLE}] {key}: given twice (as {name!r} with dashes and underscores)")
        elif not isinstance(value, bool):
            problems.append(f"[{SETTINGS_TABLE}] {key} = {_toml_example(value)}: must be true or false (a TOML boolean, without quotes)")
        else:
            settings[name] = value
        seen.add(name)
    return settings, problems


def _known_options(table: str, entries: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Normalize option names (dashes to underscores) and drop, with a problem each, unknown or reserved ones."""
    known: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in entries.items():
        name = normalize_key(key)
        if name in RESERVED_OPTIONS:
            problems.append(f"[{table}] {key}: set by the sweep (each run goes to DIR/<run name>); remove it")
        elif name not in FIELD_TYPES:
            similar = difflib.get_close_matches(name, list(FIELD_TYPES), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(similar)}?" if similar else "; run `neurorl train --help` for the options"
            problems.append(f"[{table}] {key}: unknown option{hint}")
        elif name in known:
            problems.append(f"[{table}] {key}: given twice (as {name!r} with dashes and underscores)")
        else:
            known[name] = value
    return known, problems


def _grid_value_problems(name: str, values: Any) -> list[str]:
    if not isinstance(values, list):
        return [f"[grid] {name} = {values!r}: expected a list of values, e.g. {name} = [{_toml_example(values)}]"]
    if not values:
        return [f"[grid] {name} = []: empty list; give at least one value"]
    problems = []
    formatted = [_safe(_format_value(value)) for value in values]
    for value_name, count in sorted((value, formatted.count(value)) for value in set(formatted)):
        if count > 1:
            problems.append(
                f"[grid] {name} = {values!r}: {count} values give the run name {name}={value_name}; "
                "remove the repeated value"
            )
    return problems


def _build_points(base: dict[str, Any], grid: dict[str, list[Any]]) -> tuple[list[SweepPoint], list[str]]:
    """Validate every grid point; blame each problem on [base], on one grid value or on the points that have it.

    A problem is put on one grid value when that value alone (with [base]) has it and no valid
    point contains the value, since a valid point shows that another grid value cures it.
    """
    combinations = [dict(zip(grid, combination)) for combination in itertools.product(*grid.values())]
    points: list[SweepPoint] = []
    point_problems: dict[str, list[str]] = {}
    for values in combinations:
        name = run_name(values)
        try:
            points.append(SweepPoint(name=name, values=values, config=build_config({**base, **values}, {})))
        except ConfigError as error:
            point_problems[name] = error.problems

    base_problems = _config_problems(base)
    problems = [f"{problem} (from [base])" for problem in base_problems if _problem_in(problem, point_problems)]
    explained = set(base_problems)
    valid_names = {point.name for point in points}
    for option, values in grid.items():
        for value in values:
            names = [run_name(point) for point in combinations if point[option] is value]
            if valid_names.intersection(names):
                continue
            for problem in _config_problems({**base, option: value}):
                if problem not in explained:
                    problems.append(f"{problem} (from [grid] {option} = {_toml_example(value)})")
                    explained.add(problem)

    listed: dict[str, list[str]] = {}
    for name, found in point_problems.items():
        for problem in found:
            if problem not in explained:
                listed.setdefault(problem, []).append(name)
    problems += [f"{problem} ({_describe_points(names, len(combinations))})" for problem, names in listed.items()]
    return points, problems


def _config_problems(values: dict[str, Any]) -> list[str]:
    try:
        build_config(values, {})
    except ConfigError as error:
        return error.problems
    return []


def _problem_in(problem: str, point_problems: dict[str, list[str]]) -> bool:
    return any(problem in found for found in point_problems.values())


def _describe_points(names: list[str], total: int) -> str:
    if len(names) == total:
        return f"in all {total} grid points"
    listed = ", ".join(names[:MAX_LISTED_POINTS])
    more = f" and {len(names) - MAX_LISTED_POINTS} more" if len(names) > MAX_LISTED_POINTS else ""
    return f"in {len(names)} of {total} grid points: {listed}{more}"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "-".join(_format_value(item) for item in value)
    return str(value)


def _safe(text: str) -> str:
    return _UNSAFE_CHARACTERS.sub("-", text)


def _toml_example(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
