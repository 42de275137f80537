"""bench/gpu.sh: fails fast and clearly without CUDA, and its dry run (tiny sizes, CPU) writes the JSON lines and the
markdown table the GPU run would write."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import gpu  # noqa: E402  (bench/gpu.py)


def run_gpu_script(*args, timeout=600):
    return subprocess.run([str(ROOT / "bench" / "gpu.sh"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_script_fails_fast_without_cuda(tmp_path):
    done = run_gpu_script("--out", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing written


def _check_outputs(folder: Path, benches):
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert {r["bench"] for r in records} == set(benches)
    assert not [r for r in records if "error" in r]
    table = (folder / "results.md").read_text()
    for bench in benches:
        assert f"### {bench}" in table
    return records


def test_gpu_script_dry_run_metanet(tmp_path):
    done = run_gpu_script("--dry-run", "--only", "metanet", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    records = _check_outputs(tmp_path, ["metanet"])
    measured = {(r["measurement"], r["precision"]) for r in records}
    assert measured == {("one-shot latency", "fp32"), ("one-shot throughput", "fp32"),
                        ("one-shot throughput", "tf32"), ("one-shot throughput", "bf16"),
                        ("training step (8 images)", "tf32"), ("training step (8 images)", "bf16")}
    assert all(r["seconds"] > 0 and r["rate"] > 0 for r in records)


@pytest.mark.slow
def test_gpu_script_dry_run_all_steps(tmp_path):
    done = run_gpu_script("--dry-run", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_outputs(tmp_path, gpu.STEPS)


def test_markdown_table_has_one_section_per_bench():
    records = [{"bench": "a", "x": 1.23456, "y": "u"}, {"bench": "b", "z": None}, {"bench": "a", "x": 2.0}]
    text = gpu.markdown(records)
    assert text.count("### ") == 2
    assert "| x | y |" in text and "| 1.235 | u |" in text and "| 2 |  |" in text


def test_failed_step_is_recorded_and_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "steps", lambda *a: [("metanet", [sys.executable, "-c", "raise SystemExit(3)"], 60)])
    assert gpu.main(["--dry-run", "--out", str(tmp_path)]) == 1
    (record,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert record["bench"] == "metanet" and "exit status 3" in record["error"]


def test_cpu_comparison_times_each_family_beside_eager_fp32():
    import metanet  # noqa: E402  (bench/metanet.py)

    rows = metanet.cpu_compare(["run"], 1, False, n_graphs=2, n_images=4, n_shot=2, families=["mlp-tanh", "cnn-relu"],
                               variants=["fused AdamW"])
    labels = {r["label"] for r in rows}
    assert labels == {"mlp-tanh, hidden 16, 2 layers", "cnn-relu, hidden 16, 2 layers"}
    steps = [r for r in rows if r["measurement"].startswith("training step")]
    assert sorted(r["variant"] for r in steps) == ["eager fp32", "eager fp32", "fused AdamW", "fused AdamW"]
    assert all(r["ratio"] == 1.0 for r in rows if r["variant"] == "eager fp32")
    assert all(r["seconds"] > 0 and r["rate"] == pytest.approx(2 / r["seconds"]) for r in rows)
    shots = [r for r in rows if r["measurement"].startswith("one shot")]
    assert {r["variant"] for r in shots} == {"eager fp32"}  # an optimizer variant has nothing to do in a shot


def test_fresh_zoo_scores_the_runs_own_metanet_on_a_zoo_of_another_seed(tmp_path):
    import fresh_zoo  # bench/fresh_zoo.py

    from workbench import pipeline
    from workbench.run.params import notebook_values

    params = tmp_path / "tiny.yaml"
    params.write_text("name: tiny\nseed: 0\ndataset: digits\nfamilies: [mlp-relu]\nn_networks: 12\nzoo_epochs: 2\n"
                      "lam: 0.01\nmeta_epochs: 1\nmeta_hidden: 4\nmeta_n_layers: 1\nmeta_batch_networks: 4\n"
                      "eval_networks: 3\ndevice: cpu\n")
    run, log = tmp_path / "run", tmp_path / "fresh.jsonl"
    argv = ["--params", str(params), "--run", str(run), "--networks", "5", "--cache", str(tmp_path / "zoos"),
            "--json", str(log)]
    with pytest.raises(SystemExit, match="no finished CE ScaleGMN-B run of mlp-relu"):
        fresh_zoo.main(argv)
    # train the run the way notebook 06 does for these params
    _, values = notebook_values(params, "06")
    data = pipeline.get_data("digits", None, 0)
    zoo = pipeline.get_zoo(run, "mlp-relu", data, n_networks=12, zoo_epochs=2, seed=0,
                           test_fraction=values["zoo_test_fraction"], progress=False)
    recipe = pipeline.Recipe.from_values(values)
    pipeline.train_metanet(run, zoo, data, recipe, objective="ce", lam=0.01, seed=0, progress=False)
    assert fresh_zoo.main(argv) == 0
    held_out, fresh = [json.loads(line) for line in log.read_text().splitlines()]
    assert (held_out["networks"], fresh["networks"]) == (3, 5)
    assert "fresh zoo (seed 1)" == fresh["zoo"] and held_out["run"] == fresh["run"]
    for r in (held_out, fresh):
        assert set(r["gains"]) == {"0", "1", "2", "trained", "all"}
        assert r["gains"]["all"][2] == 3 * r["networks"]  # every checkpoint of every network is scored
    # another zoo seed: other networks, so other initial accuracies
    assert fresh["gains"]["1"][0] != held_out["gains"]["1"][0]
    assert "l1" not in held_out and fresh_zoo.l1_table([held_out, fresh]) == ""  # no L1 run yet: no L1 numbers
    # with the L1 run as well, both zoos get the L1 one shot's numbers on their trained checkpoints
    pipeline.train_metanet(run, zoo, data, recipe, objective="l1", lam=0.01, seed=0, progress=False)
    log.unlink()
    assert fresh_zoo.main(argv) == 0
    held_out, fresh = [json.loads(line) for line in log.read_text().splitlines()]
    for r, networks in ((held_out, 3), (fresh, 5)):
        s = r["l1"]
        assert s["entries"] == 2 * networks and r["lam"] == 0.01  # checkpoints 1 and 2 of every network
        assert 0 <= s["acc_before"] <= 100 and 0 <= s["acc_after"] <= 100
        # balancing keeps the function and can only remove more of the L1 norm (ReLU networks)
        assert s["l1_reduction_balanced"] >= s["l1_reduction"] - 1e-6
    assert fresh["l1"]["acc_before"] != held_out["l1"]["acc_before"]
    assert fresh_zoo.l1_table([held_out, fresh]).count("| mlp-relu |") == 2


def _tiny_validation_params(tmp_path: Path) -> Path:
    """A params file small enough for the validation-only benches to train in seconds (one MLP-tanh zoo)."""
    params = tmp_path / "tiny.yaml"
    params.write_text("name: tiny\nseed: 0\ndataset: digits\nfamilies: [mlp-tanh]\nn_networks: 12\nzoo_epochs: 2\n"
                      "zoo_test_fraction: 0.5\nlam: 0.01\nmeta_epochs: 1\nmeta_hidden: 4\nmeta_n_layers: 1\n"
                      "meta_batch_networks: 4\nmeta_skip_untrained: true\ndevice: cpu\n")
    return params


def test_l1_from_ce_scores_both_starts_on_validation_networks_only(tmp_path):
    import l1_from_ce  # bench/l1_from_ce.py

    from workbench import pipeline
    from workbench.objective import evaluate

    params = _tiny_validation_params(tmp_path)
    log = tmp_path / "l1.jsonl"
    argv = ["--family", "mlp-tanh", "--lam", "0.01", "--params", str(params), "--outputs", str(tmp_path), "--log",
            str(log)]
    assert l1_from_ce.main(argv) == 0
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["start"] for r in runs] == ["scratch", "ce"] and {r["params"] for r in runs} == {"tiny"}
    for r in runs:
        assert r["acc_drop"] == pytest.approx(r["acc_before"] - r["acc_after"], abs=0.011)
        assert r["best_epoch"] == 0 and r["val_objective"] > 0
    # "before" is the validation networks' trained checkpoints on the validation images, from the zoo make run keeps
    data = pipeline.get_data("digits", None, 0)
    zoo = pipeline.get_zoo(tmp_path / "tiny", "mlp-tanh", data, n_networks=12, zoo_epochs=2, seed=0,
                           test_fraction=0.5, progress=False, verbose=False)
    val = zoo.subset(split="val")
    trained = torch.as_tensor(pipeline.trained_mask(val))
    acc = evaluate(zoo.spec, val.params, *data.split("val"))["acc"][trained].double().mean()
    assert runs[0]["acc_before"] == pytest.approx(100 * float(acc), abs=0.006)
    test = zoo.subset(split="test")  # negative control: the test networks score differently
    test_acc = evaluate(zoo.spec, test.params, *data.split("val"))["acc"][torch.as_tensor(pipeline.trained_mask(test))]
    assert abs(100 * float(test_acc.double().mean()) - runs[0]["acc_before"]) > 0.01
    md = l1_from_ce.table(log)
    assert md.count("\n") == 3 and "| mlp-tanh | 0.01 | ce |" in md


def test_validation_gain_scores_validation_networks_at_each_epoch_count(tmp_path):
    import validation_gain  # bench/validation_gain.py

    params = _tiny_validation_params(tmp_path)
    log = tmp_path / "v.jsonl"
    argv = ["--family", "mlp-tanh", "--epochs", "1", "2", "--params", str(params), "--outputs", str(tmp_path),
            "--log", str(log)]
    assert validation_gain.main(argv) == 0
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["epochs"], len(r["curve"])) for r in runs] == [(1, 1), (2, 2)]  # the epochs replaced, all trained
    for r in runs:
        assert r["best_val_loss"] == pytest.approx(min(r["curve"]), abs=1e-4)
        assert r["curve"][r["best_epoch"]] == pytest.approx(r["best_val_loss"], abs=1e-4)
    assert (tmp_path / "tiny" / "zoo" / "mlp-tanh").is_dir()  # the zoo where make run keeps it


def test_roofline_counts_matrix_product_flops_and_bounds_the_eager_time():
    import roofline  # bench/roofline.py

    a, b = torch.randn(30, 20), torch.randn(20, 10)
    assert roofline.product_flops(lambda: a @ b) == 2 * 30 * 20 * 10
    assert roofline.product_flops(lambda: torch.tanh(a) + 1) == 0  # element-wise work is not counted
    lin = torch.nn.Linear(20, 7)
    assert roofline.product_flops(lambda: lin(a)) == 2 * 30 * 20 * 7
    rows = roofline.roofline_rows(["cnn-tanh"], ["run"], repeats=1, n_graphs=2, n_images=4, n_shot=2, roof=1e11)
    assert [r["measurement"] for r in rows] == ["training step, 2 graphs x 4 images", "one shot, batch 2"]
    step, shot = rows
    assert step["product_gflop"] > shot["product_gflop"] > 0  # a step adds the backward and the zoo networks
    for r in rows:
        assert r["floor_s"] == pytest.approx(r["product_gflop"] * 1e9 / 1e11)
        assert r["bound"] == pytest.approx(r["eager_s"] / r["floor_s"])
        assert "compiled_s" not in r  # only with use_compile


@pytest.mark.slow
def test_compile_training_trains_the_same_run_eager_and_compiled(tmp_path):
    import compile_training  # bench/compile_training.py
    from on_validation import notebook06_values

    values = notebook06_values(str(_tiny_validation_params(tmp_path)))
    row = compile_training.compare(values, "mlp-tanh", tmp_path)
    assert row["compile_failed"] is None and row["first_compiled_step_s"] > 0
    assert row["ratio"] == pytest.approx(row["eager_s"] / row["compiled_s"])
    assert row["max_val_loss_diff"] < 1e-3  # one epoch: the runs have not drifted apart
    assert not (tmp_path / "tiny" / "metanet").exists()  # trained in memory: no run folder is written
