"""Grid files: YAML with `name`, `shared` settings and `axes`; expanded to TrialConfigs."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

from students.config import StudentConfig, TrainConfig
from results.errors import FrillError, first_line
from sweep.config import FIDELITIES, SweepConfig, TrialConfig

GRIDS_DIR = Path(__file__).parent / "grids"
STUDENT_KEYS = {f.name for f in dataclasses.fields(StudentConfig)}
TRAIN_KEYS = {"steps", "finetune_steps", "batch_size", "learning_rate", "lr_schedule", "seed", "init"}
SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepConfig)}
AXIS_KEYS = STUDENT_KEYS | {"seed", "learning_rate", "lr_schedule", "init"}


class GridError(FrillError):
    """A grid file that cannot be expanded; the message names the file and the problem."""


@dataclass(frozen=True)
class Grid:
    """A grid file expanded once, at one fidelity: the sweep's settings and its trials."""

    name: str
    path: Path
    sweep: SweepConfig
    trials: tuple[TrialConfig, ...]
    file_fidelity: str      # the file's own preset (sweep.fidelity may override it)

    @property
    def default_name(self) -> str:
        same = self.sweep.fidelity == self.file_fidelity
        return self.name if same else f"{self.name}-{self.sweep.fidelity}"

    @property
    def ids(self) -> list[str]:
        return [t.trial_id(self.sweep) for t in self.trials]


def resolve(grid: str | Path) -> Path:
    """A grid file path, or the short name of a file in sweep/grids/."""
    p = Path(grid)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return GRIDS_DIR / f"{grid}.yaml"


def load(grid: str | Path, fidelity: str | None = None) -> Grid:
    """Read, validate and expand a grid file (fidelity: override the file's preset)."""
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
    file_fidelity = shared.get("fidelity", "local")
    fidelity = fidelity or file_fidelity
    if fidelity not in FIDELITIES:
        raise GridError(f"{path}: fidelity {fidelity!r} is not valid; choose one of {list(FIDELITIES)}")
    preset = FIDELITIES[fidelity]
    try:
        sweep = SweepConfig(**{**{k: preset[k] for k in SWEEP_KEYS if k in preset},
                               **{k: v for k, v in shared.items() if k in SWEEP_KEYS},
                               "fidelity": fidelity})
    except (ValueError, TypeError) as e:
        raise GridError(f"{path}: shared settings: {e}") from None
    return Grid(name=name, path=path, sweep=sweep, trials=_expand(path, shared, axes, preset, sweep),
                file_fidelity=file_fidelity)


def _check_keys(path: Path, where: str, d: dict, allowed: set) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise GridError(f"{path}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _expand(path: Path, shared: dict, axes: dict, preset: dict,
            sweep: SweepConfig) -> tuple[TrialConfig, ...]:
    """Cartesian product of the axes over the shared settings, in file order."""
    trials, seen = [], {}
    keys = list(axes)
    for values in itertools.product(*axes.values()):
        s = {**shared, **dict(zip(keys, values))}
        get = lambda k, default=None: s.get(k, preset.get(k, default))  # noqa: E731 - grid, else preset
        try:
            student = StudentConfig(**{k: v for k, v in s.items() if k in STUDENT_KEYS})
            init = get("init", "scratch")
            # A preset defined as samples seen gives as many steps as its batch size needs.
            by_samples = -(-preset["samples"] // get("batch_size")) if "samples" in preset else None
            train = TrainConfig(steps=get("steps", by_samples), batch_size=get("batch_size"),
                                learning_rate=get("learning_rate"),
                                lr_schedule=get("lr_schedule"), seed=s.get("seed", 0))
            trial = TrialConfig(student=student, train=train, init=init,
                                finetune_steps=get("finetune_steps", by_samples))
        except (ValueError, TypeError) as e:
            raise GridError(f"{path}: trial {dict(zip(keys, values))}: {e}") from None
        tid = trial.trial_id(sweep)
        if tid in seen:
            raise GridError(f"{path}: duplicate trial {trial.describe()} "
                            f"(values {dict(zip(keys, values))} repeat {seen[tid]})")
        seen[tid] = dict(zip(keys, values))
        trials.append(trial)
    if sweep.shard_size and any(t.student.frontend for t in trials):
        raise GridError(f"{path}: frontend students train on waveforms, but shard_size "
                        f"{sweep.shard_size} shards log-mel features; set shard_size: 0")
    missing = sorted({t.describe() for t in trials if t.warm_start and t.twin().trial_id(sweep) not in seen})
    if missing:
        raise GridError(f"{path}: init float_twin needs each student's float twin (qat false, "
                        f"compression none) in the grid; missing for {missing[:3]}; add those "
                        "values to the axes or set init: scratch")
    return tuple(trials)
