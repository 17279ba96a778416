"""python -m results report NAME [--out DIR] [--quality COL] | rebuild SWEEP | schema

Bad input (unknown sweep, no table, older schema, unknown column) prints one line,
`error: ...`, to stderr and exits 2.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from results.schema import ResultsError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m results", description="frill-sweep results tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("report", help="write report.html + report.md for a sweep")
    rep.add_argument("name", help="sweep name under $FRILL_RESULTS (default results/runs), or a path")
    rep.add_argument("--out", help="output folder (default: the sweep folder)")
    rep.add_argument("--quality", default="probe_acc_mean", help="quality column (default probe_acc_mean)")
    reb = sub.add_parser("rebuild", help="rebuild results.parquet/.csv from the trial folders")
    reb.add_argument("sweep", help="sweep name or folder")
    sub.add_parser("schema", help="print the column table (as in results/README.md)")
    args = ap.parse_args(argv)
    # A warning (e.g. from plotting) is worth one line, not a source listing.
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    try:
        if args.cmd == "report":
            from results.report import write_report  # matplotlib only when needed

            paths = write_report(args.name, args.out, quality=args.quality)
            print(f"wrote {paths['html']} and {paths['md']}")
        elif args.cmd == "rebuild":
            from results.folder import rebuild

            df = rebuild(args.sweep)
            print(f"rebuilt {df.attrs['sweep_dir']}/results.parquet: {len(df)} trials "
                  f"({int((df['status'] == 'ERROR').sum())} errored)")
        else:
            from results.schema import markdown_table

            print(markdown_table())
    except ResultsError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
