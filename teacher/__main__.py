"""CLI: build or reuse a cached distillation set.

    python -m teacher cache --corpus builtin|PATH --teacher resemblyzer|trill|PATH[#key]
                            [--seed N] [--n-crops N] [--cache-dir D] [--verbose]

Bad input prints one `error: ...` line to stderr and exits 2.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from results.errors import FrillError
from results.files import native_stderr_to_devnull


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m teacher", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cache = sub.add_parser("cache", help="build or reuse the distillation set")
    cache.add_argument("--corpus", default="builtin",
                       help="'builtin' (espeak-ng), a folder of wav/flac/ogg, or a CSV manifest")
    cache.add_argument("--teacher", default="resemblyzer",
                       help="'resemblyzer', 'trill', a TF-Hub URL or SavedModel dir, optional #key")
    cache.add_argument("--seed", type=int, default=0)
    cache.add_argument("--n-crops", type=int, default=None,
                       help="distillation crops (default 2400)")
    cache.add_argument("--cache-dir", default=None,
                       help="default: $FRILL_CACHE or <repo>/.cache/frill-sweep")
    cache.add_argument("--verbose", action="store_true",
                       help="show progress and TensorFlow's native logs")
    return parser


def _cache(args: argparse.Namespace) -> None:
    from teacher.cache import build_or_load  # lazy: --help stays instant

    dset, reused = build_or_load(args.corpus, args.teacher, seed=args.seed,
                                 n_crops=args.n_crops, cache_dir=args.cache_dir)
    m = dset.manifest
    info = m.get("corpus_info", {})
    print(f"path: {dset.path}")
    print(f"crops: {m['n_crops']} training + {m['n_heldout']} held out")
    print(f"teacher: {m['teacher']}  output_dim: {m['output_dim']}")
    print(f"reused: {'yes' if reused else 'no'}")
    print(f"teacher_calls: {m['teacher_calls']}  ({m['teacher_crops_per_second']} crops/s)")
    print(f"build_seconds: {m['build_seconds']}  (corpus {m['corpus_seconds']} s, "
          f"teacher {m['teacher_seconds']} s)")
    print(f"eval_tasks: {', '.join(m['eval_tasks']) or 'none'}  ({m['n_eval_clips']} clips)")
    if info.get("skipped_unreadable") or info.get("skipped_short"):
        print(f"skipped: {info.get('skipped_unreadable', 0)} unreadable, "
              f"{info.get('skipped_short', 0)} shorter than one crop")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    with native_stderr_to_devnull() if not args.verbose else contextlib.nullcontext():
        handler.stream = sys.stderr  # the real stream, not the silenced fd 2
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
        if args.verbose:  # progress lines; stderr otherwise holds only warnings and errors
            logging.getLogger("teacher").setLevel(logging.INFO)
        try:
            _cache(args)
        except FrillError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted (nothing half-written is kept)", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
