"""Independent trainings in worker processes: results in job order, the costliest jobs started first, a failing job
named, and no worker left computing when its parent is killed."""
import os
import sys
import time
from pathlib import Path

import pytest

from workbench.system.parallel import run_parallel

from parallel_jobs import slow_first
from recipes import tiny_recipe


# -- parallel jobs ---------------------------------------------------------------------------------------------
def test_run_parallel_returns_results_in_job_order_and_names_a_failing_job():
    out = run_parallel(slow_first, [0, 1, 2], workers=2, progress=False)
    assert [r[0] for r in out] == [0, 1, 2]
    pids = {r[1] for r in out}
    assert os.getpid() not in pids and len(pids) == 2  # two worker processes, not this one
    assert {r[2] for r in out} == {1}  # one torch thread each
    with pytest.raises(RuntimeError, match=r"job job-boom failed: ValueError: exploded on purpose"):
        run_parallel(slow_first, [1, "boom"], workers=2, progress=False, label=lambda j: f"job-{j}")
    # one worker runs in this process (no start-up cost)
    assert [r[1] for r in run_parallel(slow_first, [1, 2], workers=1, progress=False)] == [os.getpid()] * 2


def test_start_order_starts_the_costliest_jobs_first_and_keeps_ties_in_order():
    from workbench.system.parallel import start_order

    assert start_order(["a", "b", "c"]) == [0, 1, 2]
    assert start_order([1, 5, 3, 5], cost=lambda j: j) == [1, 3, 2, 0]
    # results still come back in job order when the jobs start in cost order
    out = run_parallel(slow_first, [1, 2, 0], workers=2, progress=False, cost=lambda j: {0: 9, 1: 1, 2: 5}[j])
    assert [r[0] for r in out] == [1, 2, 0]


def test_run_cost_puts_graph_metanets_on_mlp_graphs_first():
    from workbench.pipeline.runs import _run_cost

    def cost(family, method, epochs=8, mlp_epochs=4):
        return _run_cost({"family": family, "method": method, "recipe": tiny_recipe(epochs=epochs, mlp_epochs=mlp_epochs)})

    # measured on a default run: MLP ScaleGMN-B 95 s, CNN ScaleGMN-B 48 s, CNN NFN 25 s, MLP NFN 14 s
    assert cost("mlp-tanh", "scalegmn") > cost("cnn-tanh", "gmn") > cost("cnn-relu", "nfn") > cost("mlp-tanh", "nfn-aug")
    assert cost("mlp-tanh", "scalegmn", mlp_epochs=None) == 2 * cost("mlp-tanh", "scalegmn")  # epochs apply then


def test_run_parallel_names_a_failing_job_in_process_too():
    with pytest.raises(RuntimeError, match="job job-boom failed"):
        run_parallel(slow_first, [1, "boom"], workers=1, progress=False, label=lambda j: f"job-{j}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_of_a_killed_parent_do_not_train_on(tmp_path):
    """Killing a run (its kernel or the runner) must not leave worker processes computing as orphans."""
    import signal
    import subprocess
    import textwrap

    pids = tmp_path / "pids.txt"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from parallel_jobs import sleep_and_report
        from workbench.system.parallel import run_parallel
        run_parallel(sleep_and_report, [({str(pids)!r}, 120)] * 2, workers=2, progress=False)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.2)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)  # no chance to clean up: only the kernel's parent-death signal helps
    parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has stopped computing

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers), "workers outlived their killed parent"
