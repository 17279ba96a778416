"""python -m sweep {list,trial,run,status}: the sweep's command line."""
from __future__ import annotations

import argparse
import json
import sys

from sweep import quiet
from teacher.errors import FrillError


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="frill144", help="grid YAML path or short name (sweep/grids/)")
    p.add_argument("--fidelity", choices=["smoke", "local", "paper"], default=None,
                   help="training preset (default: the grid's)")


def cmd_list(a) -> int:
    from sweep import grid
    g = grid.load(a.grid)
    for i, t in enumerate(g.trials(a.fidelity)):
        print(f"{i:4d}  {t.trial_id}  {t.describe()}  steps={t.train.steps} "
              f"batch={t.train.batch_size} lr={t.train.learning_rate:g} fidelity={t.fidelity}")
    return 0


def cmd_trial(a) -> int:
    from sweep import grid, ledger
    g = grid.load(a.grid)
    trials = g.trials(a.fidelity, threads=a.threads)
    if not 0 <= a.index < len(trials):
        raise ledger.SweepError(f"--index {a.index} is out of range: {a.grid} has {len(trials)} trials (0..{len(trials) - 1})")
    t = trials[a.index]
    out = ledger.sweep_dir("debug") / "trials" / t.trial_id
    quiet.start_tensorflow(threads=t.train.threads)
    from sweep.context import prepare
    from sweep.trial import run_trial
    log = (lambda *x, **k: print(*x, file=sys.stderr)) if a.json else print
    try:
        ctx = prepare(t, log=log)
        row = run_trial(t, ctx, out, sweep="debug", reraise=a.pdb)
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
        print(f"trial {t.trial_id} ERROR: {row['error_class']}: {row['error_message']}\n"
              f"  traceback: {out / 'error.txt'}\n"
              f"  debug it: python -m sweep trial --grid {a.grid} --index {a.index} --pdb "
              f"(make trial GRID={a.grid} INDEX={a.index} PDB=1)", file=sys.stderr)
    return 0 if row["status"] == "OK" else 1


def cmd_run(a) -> int:
    quiet.start_tensorflow()   # before Ray starts: its workers inherit the environment
    from sweep import grid, tune
    g = grid.load(a.grid)
    fidelity = a.fidelity or g.shared.get("fidelity", "local")
    name = a.name or (g.name if fidelity == g.shared.get("fidelity", "local") else f"{g.name}-{fidelity}")
    led = tune.run_sweep(g, name, fidelity, cpus_per_trial=a.cpus_per_trial,
                         memory_gb=a.memory_gb, storage=a.storage)
    return 1 if led.missing else 0


def cmd_status(a) -> int:
    from sweep import ledger
    sdir = ledger.sweep_dir(a.name)
    led = ledger.ledger(sdir)
    meta = ledger.read_meta(sdir)
    rows = ledger.read_rows(sdir)
    print(f"sweep {a.name} ({meta['grid']}, fidelity {meta['fidelity']}) at {sdir}")
    print(led.line())
    for t in led.errored:
        r = rows[t]
        print(f"  ERROR {t} {meta['trials'].get(t, '')} attempt {r.get('attempt', 1)}: "
              f"{r.get('error_class')}: {r.get('error_message')}")
    for t in led.missing:
        print(f"  missing {t} {meta['trials'].get(t, '')}")
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
