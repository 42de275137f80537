"""One command for the GPU numbers: the metanet, zoo-generation and amortization benches on one
CUDA device, written to one JSON-lines file and one markdown table.

    bench/gpu.sh [--out DIR]        # or: make bench-gpu; needs CUDA, fails at once without it
    bench/gpu.sh --dry-run          # the same steps at tiny sizes on the CPU (seconds): checks the plumbing
    bench/gpu.sh --only metanet     # a subset of the steps

Steps, each a subprocess with its own time limit (7.5 minutes together, inside an 8-minute device budget):

* ``bench/metanet.py --gpu``: one-shot latency at batch 1, one-shot throughput at batch 1,024 in fp32 / TF32 /
  bf16, training throughput at batch 256 (Small CNN Zoo architecture, ScaleGMN-B hidden 128, 4 layers), each eager
  and on the faster paths (the pass replayed from a CUDA graph, ``torch.compile``'d layers, both);
* ``bench/zoo_generation.py --devices cuda``: 1,024 digits networks trained at once vs one at a time;
* ``bench/amortization.py --device cuda``: one shot vs vectorised SGD on held-out digits CNN networks.

A step that fails or runs out of time is recorded as an ``{"bench": ..., "error": ...}`` line and the others
still run; the exit status is 1 when any step failed, 2 when there is no CUDA device.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("metanet", "zoo_generation", "amortization")
BENCH = ROOT / "bench"
NO_CUDA = ("error: bench/gpu.sh needs a CUDA GPU, and torch.cuda.is_available() is False here "
           "(torch {version}). Run it on a CUDA machine with a CUDA build of torch (make setup TORCH_SPEC=...), "
           "or use --dry-run to check the script on this CPU.")


def steps(device: str, jsonl: Path, out: Path, tiny: bool) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of every bench of the run."""
    py = sys.executable
    metanet = [py, str(BENCH / "metanet.py"), "--gpu", "--device", device, "--json", str(jsonl)]
    zoo = [py, str(BENCH / "zoo_generation.py"), "--devices", device, "--families", "cnn-tanh", "mlp-tanh",
           "--json", str(jsonl)]
    amortization = [py, str(BENCH / "amortization.py"), "--device", device, "--out", str(out / "amortization"),
                    "--json", str(jsonl)]
    if tiny:
        metanet += ["--tiny"]
        zoo += ["--networks", "8", "--loop-networks", "2", "--epochs", "1", "--threads", "1"]
        amortization += ["--networks", "8", "--zoo-epochs", "1", "--meta-epochs", "1", "--max-epochs", "1"]
    else:
        zoo += ["--networks", "1024", "--loop-networks", "16", "--epochs", "2"]
    return [("metanet", metanet, 300), ("zoo_generation", zoo, 60), ("amortization", amortization, 90)]


def markdown(records: list[dict]) -> str:
    """One table per bench, columns in order of first appearance."""
    lines, benches = [], []
    for r in records:
        if r["bench"] not in benches:
            benches.append(r["bench"])
    for bench in benches:
        rows = [r for r in records if r["bench"] == bench]
        columns = []
        for r in rows:
            columns += [k for k in r if k != "bench" and k not in columns]
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
        lines += [f"### {bench}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, no GPU")
    parser.add_argument("--out", help="output folder (default outputs/bench/gpu-<date-time>)")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these benches")
    args = parser.parse_args(argv)
    import torch  # after argument parsing: --help stays instant

    if not args.dry_run and not torch.cuda.is_available():
        print(NO_CUDA.format(version=torch.__version__), file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    out = Path(args.out) if args.out else ROOT / "outputs" / "bench" / time.strftime("gpu-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    jsonl, table = out / "results.jsonl", out / "results.md"
    jsonl.write_text("")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)"
    print(f"# bench/gpu.sh on {name}, torch {torch.__version__}; writing {jsonl} and {table}", flush=True)
    failed = []
    start = time.perf_counter()
    for step, command, limit in steps(device, jsonl, out, args.dry_run):
        if args.only and step not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, timeout=limit, capture_output=True, text=True)
            error = None if done.returncode == 0 else f"exit status {done.returncode}: {done.stderr.strip()[-800:]}"
            print(done.stdout, end="", flush=True)
        except subprocess.TimeoutExpired:
            error = f"ran past its limit of {limit} s"
        if error:
            failed.append(step)
            with jsonl.open("a") as f:
                f.write(json.dumps({"bench": step, "error": error}) + "\n")
            print(f"# {step} FAILED: {error}", file=sys.stderr, flush=True)
        print(f"# {step}: {time.perf_counter() - t0:.0f} s", flush=True)
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    header = (f"# GPU benchmarks: {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, "
              f"{time.perf_counter() - start:.0f} s in all\n\n")
    table.write_text(header + markdown(records))
    print(f"# wrote {len(records)} records to {jsonl} and the tables to {table}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
