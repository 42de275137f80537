"""Command line: ``python -m workbench {run,validate,train} ...``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebook sequence with papermill into outputs/<name>/")
    p_run.add_argument("params", help="params file, e.g. params/default.yaml")
    p_run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 01 03")
    p_run.add_argument("--resume", action="store_true",
                       help="skip the leading notebooks whose outputs are complete and intact; run the rest")
    p_run.add_argument("--outputs", metavar="DIR", default=None,
                       help="folder that receives <name>/ (default: the repository's outputs/)")
    p_val = sub.add_parser("validate", help="check a params file against the notebooks' parameters cells")
    p_val.add_argument("params")
    p_train = sub.add_parser("train", help="train the meta-optimizer for one family without Jupyter "
                                           "(works under torchrun for DistributedDataParallel)")
    p_train.add_argument("params")
    p_train.add_argument("--family", required=True, help="mlp-tanh | mlp-relu | cnn-tanh | cnn-relu")
    p_train.add_argument("--objective", default="ce", choices=["ce", "l1"])
    p_train.add_argument("--symmetry", default=None, help="override: scale | sign | none")
    p_train.add_argument("--no-resume", action="store_true")
    args = parser.parse_args(argv)

    from .params import ParamsError
    from .runner import NotebookFailed

    try:
        if args.command == "run":
            from .runner import run

            from pathlib import Path

            out = run(args.params, only=args.only, resume=args.resume,
                      outputs=Path(args.outputs) if args.outputs else None)
            print(f"[workbench] outputs in {out}")
        elif args.command == "validate":
            from .params import load_params

            params = load_params(args.params)
            print(f"[workbench] {args.params} is valid: run name {params.name!r}, "
                  f"{len(params.shared)} shared keys, sections {sorted(params.sections)}")
        elif args.command == "train":
            from .pipeline import train_from_params

            train_from_params(args.params, args.family, args.objective, symmetry=args.symmetry,
                              resume=not args.no_resume)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
