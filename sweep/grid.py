"""Grid files: YAML with `name`, `shared` settings and `axes`; expanded to TrialConfigs."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

from students.config import StudentConfig, TrainConfig
from sweep.config import FIDELITIES, TrialConfig
from results.errors import FrillError, first_line

GRIDS_DIR = Path(__file__).parent / "grids"
STUDENT_KEYS = {f.name for f in dataclasses.fields(StudentConfig)}
TRAIN_KEYS = {"steps", "batch_size", "learning_rate", "seed"}
SWEEP_KEYS = {"teacher", "corpus", "fidelity", "n_crops", "latency_threads", "latency_runs"}
AXIS_KEYS = STUDENT_KEYS | {"seed", "learning_rate"}


class GridError(FrillError):
    """A grid file that cannot be expanded; the message names the file and the problem."""


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path
    shared: dict
    axes: dict

    def trials(self, fidelity: str | None = None, threads: int = 1) -> list[TrialConfig]:
        return expand(self, fidelity, threads)


def resolve(grid: str | Path) -> Path:
    """A grid file path, or the short name of a file in sweep/grids/."""
    p = Path(grid)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return GRIDS_DIR / f"{grid}.yaml"


def load(grid: str | Path) -> Grid:
    path = resolve(grid)
    if not path.is_file():
        known = sorted(q.stem for q in GRIDS_DIR.glob("*.yaml"))
        raise GridError(f"grid {grid!r} not found: give a YAML path or one of {known}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GridError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise GridError(f"{path}: expected a mapping with keys name, shared, axes")
    _check_keys(path, "top level", data, {"name", "shared", "axes"})
    shared, axes = data.get("shared") or {}, data.get("axes")
    if not isinstance(shared, dict):
        raise GridError(f"{path}: 'shared' must be a mapping")
    if not isinstance(axes, dict) or not axes:
        raise GridError(f"{path}: 'axes' must be a non-empty mapping of setting -> list of values")
    _check_keys(path, "shared", shared, STUDENT_KEYS | TRAIN_KEYS | SWEEP_KEYS)
    _check_keys(path, "axes", axes, AXIS_KEYS)
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{path}: axis {key!r} must be a non-empty list")
        if key in shared:
            raise GridError(f"{path}: {key!r} is both shared and an axis; keep one")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise GridError(f"{path}: name {name!r} must be letters, digits, '-' or '_'")
    grid = Grid(name=name, path=path, shared=shared, axes=axes)
    expand(grid)  # validate every trial before anything launches
    return grid


def _check_keys(path: Path, where: str, d: dict, allowed: set) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise GridError(f"{path}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def expand(grid: Grid, fidelity: str | None = None, threads: int = 1) -> list[TrialConfig]:
    """Cartesian product of the axes over the shared settings, in file order."""
    fidelity = fidelity or grid.shared.get("fidelity", "local")
    if fidelity not in FIDELITIES:
        raise GridError(f"{grid.path}: fidelity {fidelity!r} is not valid; choose one of {list(FIDELITIES)}")
    preset = FIDELITIES[fidelity]
    trials, seen = [], {}
    keys = list(grid.axes)
    for values in itertools.product(*grid.axes.values()):
        s = {**grid.shared, **dict(zip(keys, values))}
        try:
            student = StudentConfig(**{k: v for k, v in s.items() if k in STUDENT_KEYS})
            train = TrainConfig(
                steps=s.get("steps", preset["steps"]),
                batch_size=s.get("batch_size", preset["batch_size"]),
                learning_rate=s.get("learning_rate", preset["learning_rate"]),
                seed=s.get("seed", 0), threads=threads)
            trial = TrialConfig(
                student=student, train=train, fidelity=fidelity,
                teacher=s.get("teacher", "resemblyzer"), corpus=str(s.get("corpus", "builtin")),
                n_crops=s.get("n_crops", preset["n_crops"]),
                latency_threads=s.get("latency_threads", 1),
                latency_runs=s.get("latency_runs", preset["latency_runs"]))
        except (ValueError, TypeError) as e:
            raise GridError(f"{grid.path}: trial {dict(zip(keys, values))}: {e}") from None
        if trial.trial_id in seen:
            raise GridError(f"{grid.path}: duplicate trial {trial.describe()} "
                            f"(values {dict(zip(keys, values))} repeat {seen[trial.trial_id]})")
        seen[trial.trial_id] = dict(zip(keys, values))
        trials.append(trial)
    return trials
