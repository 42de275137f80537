"""Command line: ``python -m workbench {run,validate,train,zoo,optimize,report,index} ...``.

Every problem the workbench recognises (a :class:`~workbench.errors.WorkbenchError`: a bad params file, a corrupt
zoo, a busy output folder, a failed notebook ...) is printed as one ``error: ...`` line with a non-zero exit code
(2 for params files and usage, 1 otherwise); only real bugs show a traceback, or every error with ``--debug``.
To add a command: a sub-parser in :func:`build_parser` and a branch in :func:`run_command`.
"""
from __future__ import annotations

import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in the workbench's ``error: ...`` form (exit code 2)."""

    def error(self, message):
        self.exit(2, f"error: {message}\n{self.format_usage()}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m workbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of every error (also WORKBENCH_DEBUG=1)")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", parents=[common],
                           help="execute the notebook sequence with papermill into outputs/<name>/")
    p_run.add_argument("params", help="params file, e.g. params/default.yaml")
    p_run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 01 03")
    p_run.add_argument("--resume", action="store_true",
                       help="skip the leading notebooks whose outputs are complete and intact; run the rest")
    p_run.add_argument("--outputs", metavar="DIR", default=None,
                       help="folder that receives <name>/ (default: the repository's outputs/)")
    p_val = sub.add_parser("validate", parents=[common],
                           help="check a params file against the notebooks' parameters cells")
    p_val.add_argument("params")
    p_train = sub.add_parser("train", parents=[common],
                             help="train the meta-optimizer for one family without Jupyter "
                                  "(works under torchrun for DistributedDataParallel)")
    p_train.add_argument("params")
    p_train.add_argument("--family", required=True, help="mlp-tanh | mlp-relu | cnn-tanh | cnn-relu")
    p_train.add_argument("--objective", default="ce", choices=["ce", "l1"])
    p_train.add_argument("--symmetry", default=None, choices=["scale", "sign", "none"],
                         help="override: scale | sign | none")
    p_train.add_argument("--no-resume", action="store_true")
    p_zoo = sub.add_parser("zoo", parents=[common],
                           help="generate the zoo of one family with a params file's zoo settings (as notebook 03)")
    p_zoo.add_argument("params")
    p_zoo.add_argument("--family", required=True, help="mlp-tanh | mlp-relu | cnn-tanh | cnn-relu")
    p_zoo.add_argument("--seed", type=int, default=None, help="override the params file's seed")
    p_zoo.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder (or a zoo, replaced)")
    p_opt = sub.add_parser("optimize", parents=[common],
                           help="apply a trained meta-optimizer to every network of a zoo folder")
    p_opt.add_argument("model", help="metanetwork checkpoint, e.g. <run folder>/best.pt")
    p_opt.add_argument("zoo_dir", metavar="ZOO_DIR", help="a workbench zoo folder or a Small CNN Zoo folder")
    p_opt.add_argument("--out", required=True, metavar="DIR", help="new folder for the optimized zoo (same format)")
    p_opt.add_argument("--evaluate", action="store_true",
                       help="print average/max test accuracy before -> after on the zoo's data set")
    p_opt.add_argument("--data-path", default=None, metavar="P", help="CIFAR-10 for cifar10-gs zoos")
    p_opt.add_argument("--batch-size", type=int, default=256, metavar="N", help="networks per forward pass")
    p_opt.add_argument("--device", default="cpu", help="cpu | cuda[:i] | auto")
    p_rep = sub.add_parser("report", parents=[common],
                           help="snapshot a finished run's results into the repository and render them (README block)")
    p_rep.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder, e.g. outputs/default")
    p_rep.add_argument("--snapshot", required=True, metavar="DEST", help="e.g. docs/results/default")
    p_rep.add_argument("--readme", default=None, metavar="README",
                       help="also replace this file's <!-- BEGIN RESULTS NAME --> block (NAME = DEST's folder name)")
    p_idx = sub.add_parser("index", parents=[common],
                           help="(re)write a run folder's index.html: links to its figures, tables and notebooks")
    p_idx.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. outputs/default")
    p_idx.add_argument("--no-html", action="store_true",
                       help="link the executed notebooks as .ipynb without converting them to HTML")
    return parser


def run_command(args: argparse.Namespace) -> None:
    """Carry out one parsed command; problems surface as WorkbenchErrors."""
    from pathlib import Path

    if args.command == "run":
        from .runner import run

        out = run(args.params, only=args.only, resume=args.resume,
                  outputs=Path(args.outputs) if args.outputs else None)
        print(f"[workbench] outputs in {out}")
    elif args.command == "validate":
        from .params import load_params

        params = load_params(args.params)
        print(f"[workbench] {args.params} is valid: run name {params.name!r}, "
              f"{len(params.shared)} shared keys, sections {sorted(params.sections)}")
    elif args.command == "train":
        _train_command(args)
    elif args.command == "zoo":
        from .tools import generate_zoo

        zoo = generate_zoo(args.params, args.family, args.out, seed=args.seed)
        print(f"[workbench] {args.family} zoo written to {args.out}: {zoo.meta['net_id'].nunique()} networks, "
              f"{len(zoo)} entries (checkpoints), {zoo.spec.describe()}")
    elif args.command == "optimize":
        _optimize_command(args)
    elif args.command == "report":
        from .report import render, snapshot, update_readme

        dest = snapshot(args.run_dir, args.snapshot)
        print(render(dest))
        if args.readme:
            update_readme(args.readme, dest)
            print(f"[workbench] {args.readme}: block {dest.name} regenerated from {dest}")
    elif args.command == "index":
        from .index import write_index

        print(f"[workbench] results index: {write_index(args.run_dir, convert=not args.no_html, log=print)}")


def _train_command(args: argparse.Namespace) -> None:
    """``train``: one metanetwork training from a params file, holding the run folder's lock."""
    from .errors import ConfigError
    from .io import RunFolderError, run_lock
    from .params import load_params
    from .pipeline import train_from_params
    from .ranges import PARAMS_RANGES
    from .runner import output_root

    why = PARAMS_RANGES["family"].problem(args.family)
    if why:
        raise ConfigError(f"--family {why}")
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone holds the folder's lock
        train_from_params(args.params, args.family, args.objective, symmetry=args.symmetry,
                          resume=not args.no_resume)
        return
    out = output_root(load_params(args.params))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise RunFolderError(f"cannot create the output folder {out}: {getattr(err, 'strerror', None) or err}")
    with run_lock(out, f"python -m workbench train {args.params} --family {args.family}"):
        train_from_params(args.params, args.family, args.objective, symmetry=args.symmetry,
                          resume=not args.no_resume)


def _optimize_command(args: argparse.Namespace) -> None:
    """``optimize``: a trained meta-optimizer applied to a zoo folder, with a one-line summary."""
    from .tools import optimize_zoo

    s = optimize_zoo(args.model, args.zoo_dir, args.out, evaluate=args.evaluate, data_path=args.data_path,
                     batch_size=args.batch_size, device=args.device)
    print(f"[workbench] optimized {s['n_networks']} networks ({s['format']} format) in "
          f"{s['ms_per_network']:.3f} ms per network; written to {args.out}")
    if args.evaluate:
        print(f"[workbench] test accuracy on {s['dataset']}: average {s['avg_acc_before']:.2f} -> "
              f"{s['avg_acc_after']:.2f} %, max {s['max_acc_before']:.2f} -> {s['max_acc_after']:.2f} %")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0")

    from .errors import WorkbenchError
    from .params import ParamsError

    try:
        run_command(args)
    except WorkbenchError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ParamsError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
