"""Command line: ``python -m workbench {run,validate,train,zoo,optimize,ship,report,index} ...``.

Every problem the workbench recognises (a :class:`~workbench.errors.WorkbenchError`: a bad params file, a corrupt
zoo, a busy output folder, a failed notebook ...) is printed as one ``error: ...`` line with a non-zero exit code
(2 for params files, flags and ``WORKBENCH_*`` variables, 1 otherwise); only real bugs show a traceback, or every
error with ``--debug``. Flags that set a setting a params file also sets (``--seed``, ``--device``, ``--family``,
``--batch-size``) meet the params file's rules (:func:`workbench.run.params_rules.check_flag`) before any work. Ctrl-C
ends with one line that says what to do next (exit code 130). ``validate`` and ``run`` check a params file's paths and
devices on this machine and print the run's estimated time and memory per notebook (:mod:`workbench.run.estimate`)
before anything runs.
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


def _add_sequence_commands(sub, common) -> None:
    """``run`` and ``validate``: the notebook sequence of a params file, and its checks and estimate."""
    p_run = sub.add_parser("run", parents=[common],
                           help="execute the notebook sequence with papermill into outputs/<name>/")
    p_run.add_argument("params", help="params file, e.g. params/default.yaml")
    p_run.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 01 03")
    p_run.add_argument("--resume", action="store_true",
                       help="skip the leading notebooks whose outputs are complete and intact; run the rest")
    p_run.add_argument("--outputs", metavar="DIR", default=None,
                       help="folder that receives <name>/ (default: the repository's outputs/)")
    p_run.add_argument("--no-estimate", action="store_true",
                       help="start without checking paths and devices or estimating time and memory first")
    p_val = sub.add_parser("validate", parents=[common],
                           help="check a params file against the notebooks' parameters cells and this machine (paths, "
                                "devices), and estimate the run's time and memory here")
    p_val.add_argument("params")
    p_val.add_argument("--only", nargs="+", metavar="NN", help="the notebooks to check and estimate, e.g. --only 03 04")
    p_val.add_argument("--static", action="store_true",
                       help="check the file against the notebooks only (no paths, devices or estimate)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m workbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of every error (also WORKBENCH_DEBUG=1)")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sequence_commands(sub, common)
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
    p_opt = sub.add_parser("optimize", parents=[common], help="apply a trained meta-optimizer to a zoo or one network")
    p_opt.add_argument("model", help="metanetwork checkpoint (<run folder>/best.pt); one network: also a shipped name")
    p_opt.add_argument("zoo_dir", metavar="ZOO_DIR", help="a workbench or Small CNN Zoo folder, or one state dict file")
    p_opt.add_argument("--out", required=True, metavar="DIR", help="new folder for the zoo (same format) or new file")
    p_opt.add_argument("--evaluate", action="store_true",
                       help="print average/max test accuracy before -> after on the zoo's data set")
    p_opt.add_argument("--data-path", default=None, metavar="P", help="CIFAR-10 for cifar10-gs zoos")
    p_opt.add_argument("--batch-size", type=int, default=256, metavar="N", help="networks per forward pass")
    p_opt.add_argument("--device", default="cpu", help="cpu | cuda[:i] | mps | auto")
    p_opt.add_argument("--drop-nonfinite", action="store_true",
                       help="leave out (and count) the networks whose one-shot output is not finite, instead of "
                            "refusing the whole zoo")
    _add_ship_parser(sub, common)
    p_rep = sub.add_parser("report", parents=[common],
                           help="snapshot a finished run's results into the repository and render them (README block)")
    p_rep.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder, e.g. outputs/default")
    p_rep.add_argument("--snapshot", required=True, metavar="DEST", help="e.g. docs/results/default")
    p_rep.add_argument("--readme", action="append", default=[], metavar="PAGE",
                       help="also regenerate this markdown file's blocks <!-- BEGIN RESULTS NAME --> and <!-- BEGIN "
                            "FINDINGS NAME --> (NAME = DEST's folder name); repeat for several files, e.g. "
                            "--readme README.md --readme docs/results.md")
    p_idx = sub.add_parser("index", parents=[common],
                           help="(re)write a run folder's index.html: links to its figures, tables and notebooks")
    p_idx.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. outputs/default")
    p_idx.add_argument("--no-html", action="store_true",
                       help="link the executed notebooks as .ipynb without converting them to HTML")
    return parser


def _add_ship_parser(sub, common: argparse.ArgumentParser) -> None:
    p_ship = sub.add_parser("ship", parents=[common],
                            help="regenerate the shipped one-shot optimizers from a finished run (ScaleGMN-B CE, L1)")
    p_ship.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder, e.g. outputs/default")
    p_ship.add_argument("--dest", default=None, metavar="DIR", help="default: the package's workbench/optimizers/")
    p_ship.add_argument("--snapshot", default=None, metavar="DIR",
                        help="refuse unless this snapshot (e.g. docs/results/default) is of the same run")
    p_ship.add_argument("--docs", default=None, metavar="PAGE",
                        help="also regenerate the transfer table of this page, e.g. docs/oneshot.md")
    p_ship.add_argument("--fresh-networks", type=int, default=32, metavar="N",
                        help="networks per fresh zoo (another seed; the training architecture and its measured "
                             "variants) measured per optimizer")


def run_command(args: argparse.Namespace) -> None:
    """Carry out one parsed command; problems surface as WorkbenchErrors."""
    from pathlib import Path

    if args.command == "run":
        from .run.runner import run

        out = run(args.params, only=args.only, resume=args.resume,
                  outputs=Path(args.outputs) if args.outputs else None, estimate=not args.no_estimate)
        print(f"[workbench] outputs in {out}")
    elif args.command == "validate":
        _validate_command(args)
    elif args.command == "train":
        _train_command(args)
    elif args.command == "zoo":
        from .run.params_rules import check_flag
        from .run.zoo_commands import generate_zoo

        check_flag("--family", args.family)
        check_flag("--seed", args.seed)
        zoo = generate_zoo(args.params, args.family, args.out, seed=args.seed)
        print(f"[workbench] {args.family} zoo written to {args.out}: {zoo.meta['net_id'].nunique()} networks, "
              f"{len(zoo)} entries (checkpoints), {zoo.spec.describe()}")
    elif args.command == "optimize":
        _optimize_command(args)
    elif args.command == "ship":
        _ship_command(args)
    elif args.command == "report":
        _report_command(args)
    elif args.command == "index":
        from .reporting.index import check_run_folder, write_index
        from .system.io import run_lock

        check_run_folder(args.run_dir)
        with run_lock(args.run_dir, f"python -m workbench index {args.run_dir}"):
            print(f"[workbench] results index: {write_index(args.run_dir, convert=not args.no_html, log=print)}")


def _validate_command(args: argparse.Namespace) -> None:
    """``validate``: the file against the notebooks, then (unless ``--static``) against this machine, with the
    estimate of the run's time and memory here."""
    from .run.estimate import check_run
    from .run.params import list_notebooks, load_params
    from .run.runner import select_notebooks

    selected = select_notebooks(args.only)
    params = load_params(args.params, list_notebooks(), selected=selected)
    print(f"[workbench] {args.params} is valid: run name {params.name!r}, "
          f"{len(params.shared)} shared keys, sections {sorted(params.sections)}")
    if not args.static:
        check_run(params, selected)
        print("[workbench] its paths and devices exist on this machine and every step fits the memory budget")


def _train_command(args: argparse.Namespace) -> None:
    """``train``: one metanetwork training from a params file, holding the run folder's lock."""
    from .system.io import RunFolderError, run_lock
    from .run.params import file_values
    from .run.params_rules import check_flag
    from .run.train_command import train_from_params
    from .run.runner import output_root

    check_flag("--family", args.family)
    _check_symmetry_flag(args.family, args.symmetry)
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone holds the folder's lock
        train_from_params(args.params, args.family, args.objective, symmetry=args.symmetry,
                          resume=not args.no_resume)
        return
    out = output_root(file_values(args.params, "04")[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise RunFolderError(f"cannot create the output folder {out}: {getattr(err, 'strerror', None) or err}")
    with run_lock(out, f"python -m workbench train {args.params} --family {args.family}"):
        train_from_params(args.params, args.family, args.objective, symmetry=args.symmetry,
                          resume=not args.no_resume)


def _check_symmetry_flag(family: str, symmetry: str | None) -> None:
    """``--symmetry sign`` suits tanh families and ``scale`` ReLU ones (``none`` any): refused before the zoo is
    generated, not after."""
    from .errors import UsageError
    from .symmetry import ACTIVATION_GROUPS

    activation = family.rsplit("-", 1)[-1]
    if symmetry in (None, "none") or ACTIVATION_GROUPS.get(activation) == symmetry:
        return
    suits = ", ".join(f"{group} for {act}" for act, group in ACTIVATION_GROUPS.items())
    raise UsageError(f"--symmetry {symmetry} does not suit --family {family}: {activation} networks have the "
                     f"{ACTIVATION_GROUPS.get(activation)} symmetry ({suits}; none breaks it for any family). Pass "
                     f"--symmetry {ACTIVATION_GROUPS.get(activation)} or none, or leave it out")


def _optimize_command(args: argparse.Namespace) -> None:
    """``optimize``: a trained meta-optimizer applied to a zoo folder, with a one-line summary."""
    from pathlib import Path

    from .run.params_rules import check_flag
    from .run.zoo_commands import optimize_zoo

    check_flag("--device", args.device)
    check_flag("--batch-size", args.batch_size)
    if Path(args.zoo_dir).is_file():
        return _optimize_network_command(args)
    s = optimize_zoo(args.model, args.zoo_dir, args.out, evaluate=args.evaluate, data_path=args.data_path,
                     batch_size=args.batch_size, device=args.device, drop_nonfinite=args.drop_nonfinite)
    print(f"[workbench] optimized {s['n_networks']} networks ({s['format']} format) in "
          f"{s['ms_per_network']:.3f} ms per network; written to {args.out}")
    if s.get("dropped_nonfinite"):
        named = ", ".join(d["entry"] for d in s["dropped"][:8]) + (" ..." if len(s["dropped"]) > 8 else "")
        print(f"[workbench] left out {s['dropped_nonfinite']} of {s['n_networks_input']} networks whose one-shot "
              f"output is not finite (--drop-nonfinite; listed in optimized.json): {named}")
    if args.evaluate:
        which = ("test-split networks (never seen by a metanetwork trained on this zoo)" if s["scored_split"] == "test"
                 else "networks (the zoo has no test split)")
        print(f"[workbench] test accuracy on {s['dataset']} of the {s['scored_entries']} {which}: average "
              f"{s['avg_acc_before']:.2f} -> {s['avg_acc_after']:.2f} %, max {s['max_acc_before']:.2f} -> "
              f"{s['max_acc_after']:.2f} %")
        others = [f"{name} {d['avg_acc_before']:.2f} -> {d['avg_acc_after']:.2f} % ({d['entries']})"
                  for name, d in s["by_split"].items() if name != "test"]
        if others:
            print(f"[workbench] average by split (entries), for comparison: {'; '.join(others)}")


def _ship_command(args: argparse.Namespace) -> None:
    """``ship``: the shipped optimizers regenerated from a finished run (:mod:`workbench.run.ship`)."""
    from .run.ship import ship

    kwargs = {} if args.dest is None else {"dest": args.dest}
    records = ship(args.run_dir, snapshot=args.snapshot, docs=args.docs, fresh_networks=args.fresh_networks, **kwargs)
    print(f"[workbench] shipped {len(records)} optimizers from {args.run_dir}: {', '.join(r['name'] for r in records)}")


def _optimize_network_command(args: argparse.Namespace) -> None:
    """``optimize`` on one network's state dict file (:mod:`workbench.run.network_file`)."""
    from .run.network_file import optimize_network

    s = optimize_network(args.model, args.zoo_dir, args.out, evaluate=args.evaluate, data_path=args.data_path,
                         device=args.device)
    if s["warning"]:
        print(f"[workbench] warning: {s['warning']}")
    print(f"[workbench] optimized {s['architecture']} in {1e3 * s['seconds']:.1f} ms; written to {args.out}")
    if args.evaluate:
        print(f"[workbench] test accuracy on {s['dataset']}: {s['acc_before']:.2f} -> {s['acc_after']:.2f} %")


def _report_command(args: argparse.Namespace) -> None:
    """``report``: snapshot a finished run, print its rendering and (``--readme``) regenerate the README block."""
    from .reporting.report import render, snapshot, update_blocks

    dest = snapshot(args.run_dir, args.snapshot)
    print(render(dest))
    for page in args.readme:
        kinds = update_blocks(page, dest)
        print(f"[workbench] {page}: {' and '.join(kinds)} block {dest.name} regenerated from {dest}")


def _after_interrupt(args: argparse.Namespace) -> str:
    """What to do after Ctrl-C stopped ``args.command`` (the one line printed)."""
    if args.command == "run":
        again = " ".join(["python -m workbench run", args.params, *(["--only", *args.only] if args.only else []),
                          *(["--outputs", args.outputs] if args.outputs else []), "--resume"])
        return ("interrupted (Ctrl-C); the notebooks that finished are intact. Rerun with --resume to go on from the "
                f"first one that did not: {again}")
    if args.command == "train":
        how = "without --no-resume " if args.no_resume else ""
        return (f"interrupted (Ctrl-C); rerun the same command {how}to resume training from the run's last "
                "checkpoint.pt")
    return ("interrupted (Ctrl-C); nothing was half-written (outputs are renamed into place only when complete). "
            "Rerun the command")


def _close_progress_bars() -> None:
    """Close the progress bars an interrupted command left open, so that the error line starts a line of its own
    (instead of the bar redrawing itself after it at exit)."""
    std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", [])):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from .system import environment
    from .errors import ParamsError, UsageError, WorkbenchError

    try:
        debug = args.debug or environment.debug()
    except UsageError:
        debug = args.debug  # the check below reports the bad value
    try:
        environment.check()
        run_command(args)
    except WorkbenchError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, (ParamsError, UsageError)) else 1
    except KeyboardInterrupt:
        if debug:
            raise
        _close_progress_bars()
        print(f"error: {_after_interrupt(args)}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
