"""python -m sweep {list,trial,run,status}: the sweep's command line."""
from __future__ import annotations

import argparse
import json
import sys

from results.errors import FrillError
from sweep import quiet


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="frill144", help="grid YAML path or short name (sweep/grids/)")
    from sweep.config import FIDELITIES
    p.add_argument("--fidelity", choices=list(FIDELITIES), default=None,
                   help="training preset (default: the grid's)")


def cmd_list(a) -> int:
    from sweep import grid
    g = grid.load(a.grid, a.fidelity)
    for i, (tid, t) in enumerate(zip(g.ids, g.trials)):
        print(f"{i:4d}  {tid}  {t.describe()}  steps={t.train.steps} batch={t.train.batch_size} "
              f"lr={t.train.learning_rate:g} init={'float_twin' if t.warm_start else 'scratch'} "
              f"fidelity={g.sweep.fidelity}")
    return 0


def cmd_trial(a) -> int:
    import shutil
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from results import folder
    from sweep import SweepError, grid
    g = grid.load(a.grid, a.fidelity)
    if a.threads < 1:
        raise SweepError(f"--threads must be >= 1, got {a.threads}")
    if not 0 <= a.index < len(g.trials):
        raise SweepError(f"--index {a.index} is out of range: {a.grid} has {len(g.trials)} trials (0..{len(g.trials) - 1})")
    t = g.trials[a.index]
    t = replace(t, train=replace(t.train, threads=a.threads))
    sdir = folder.sweep_dir("debug")
    out = sdir / "trials" / t.trial_id(g.sweep)
    quiet.start_tensorflow(threads=a.threads)
    from sweep.context import prepare, training_size
    from sweep.trial import load_float_weights, run_trial
    log = (lambda *x, **k: print(*x, file=sys.stderr)) if a.json else print

    def run(trial, init=None) -> dict:
        tid = trial.trial_id(g.sweep)
        keep = not trial.warm_start and trial.student == trial.twin_student
        if a.pdb:   # in place, so the post-mortem's error.txt is where the message says
            return run_trial(trial, ctx, sdir / "trials" / tid, sweep="debug", init=init,
                             keep_weights=keep, reraise=True)
        work = Path(tempfile.mkdtemp(prefix=f"trial-{tid}-"))
        try:   # run aside, then land whole: the debug folder never holds half a trial
            run_trial(trial, ctx, work, sweep="debug", init=init, keep_weights=keep)
            return folder.land(sdir, tid, lambda tmp: shutil.copytree(work, tmp))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    try:
        ctx = prepare(g.sweep, log=log,
                      n_crops=training_size(g.sweep, max(t.samples_seen, t.twin().samples_seen)))
        init = None
        if t.warm_start:   # the float twin's weights, from its own debug run (run it if missing)
            twin = t.twin()
            weights = sdir / "trials" / twin.trial_id(g.sweep) / "float_weights.npz"
            if not weights.exists():
                log(f"running the float twin {twin.trial_id(g.sweep)} ({twin.describe()}) first")
                if run(twin)["status"] != "OK":
                    raise SweepError(f"the float twin failed; see {weights.parent / 'error.txt'}")
            init = load_float_weights(weights)
        row = run(t, init)
    except Exception:
        if not a.pdb:
            raise
        # --pdb: the failing frame, not an ERROR row (error.txt is written first, as always).
        import pdb
        import traceback
        traceback.print_exc()
        print(f"--pdb: post-mortem in the failing frame (traceback also in {out / 'error.txt'}); "
              "'q' quits", file=sys.stderr, flush=True)
        pdb.post_mortem(sys.exc_info()[2])
        return 1
    if a.json:
        print(json.dumps(row, default=str))
    else:
        for k, v in row.items():
            print(f"{k:36s} {v}")
        print(f"trial folder: {out}")
    if row["status"] != "OK":
        print(f"trial {row['trial_id']} ERROR: {row['error_class']}: {row['error_message']}\n"
              f"  traceback: {out / 'error.txt'}\n"
              f"  debug it: python -m sweep trial --grid {a.grid} --index {a.index} --pdb "
              f"(make trial GRID={a.grid} INDEX={a.index} PDB=1)", file=sys.stderr)
    return 0 if row["status"] == "OK" else 1


def cmd_run(a) -> int:
    quiet.start_tensorflow()   # before Ray starts: its workers inherit the environment
    from sweep import driver, grid
    g = grid.load(a.grid, a.fidelity)
    try:
        led = driver.run_sweep(g, a.name or g.default_name, cpus_per_trial=a.cpus_per_trial,
                               gpus_per_trial=a.gpus_per_trial, memory_gb=a.memory_gb,
                               storage=a.storage)
    except KeyboardInterrupt:   # run_sweep has printed the ledger and the resume command
        return 130
    return 1 if led.missing else 0


def cmd_status(a) -> int:
    from results import folder
    sdir = folder.sweep_dir(a.name)
    info = folder.read_info(sdir)
    rows = folder.read_rows(sdir)
    led = folder.ledger(rows, info)
    print(f"sweep {a.name} ({info['grid']}, fidelity {info['fidelity']}) at {sdir}")
    print(led.line())
    trials = info.get("trials") or {}
    for t in led.errored:
        r = rows[t]
        print(f"  ERROR {t} {trials.get(t, '')} attempt {r.get('attempt', 1)}: "
              f"{r.get('error_class')}: {r.get('error_message')}")
    for t in led.missing:
        print(f"  missing {t} {trials.get(t, '')}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="print one line per trial: index, id, config")
    _grid_args(p)
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("trial", help="run one trial in-process (no Ray) and print its row")
    _grid_args(p)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="TF threads for training")
    p.add_argument("--pdb", action="store_true",
                   help="on an exception, open pdb's post-mortem in the failing frame instead of writing an ERROR row")
    p.set_defaults(fn=cmd_trial)
    p = sub.add_parser("run", help="run or resume a sweep on Ray Tune")
    _grid_args(p)
    p.add_argument("--name", default=None, help="sweep name (default: the grid's name)")
    p.add_argument("--cpus-per-trial", type=int, default=1)
    p.add_argument("--gpus-per-trial", type=float, default=0,
                   help="GPUs per trial (0.5: two trials share one); latency is still timed on CPU")
    p.add_argument("--memory-gb", type=float, default=2.0, help="Ray memory request per trial")
    p.add_argument("--storage", default=None, help="Tune storage_path (shared on a cluster)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("status", help="print the ledger: expected, done, errored, missing")
    p.add_argument("--name", required=True)
    p.set_defaults(fn=cmd_status)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except FrillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `python -m sweep list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
