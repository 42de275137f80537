"""``python -m workbench ship RUN_DIR`` (workbench/run/ship.py) on a tiny run made here, and the loader of shipped files
(workbench/optimizers): the right run folders are picked (ScaleGMN-B, not the GMN-B control beside them), the recorded
gain is :func:`workbench.pipeline.one_shot_gain`'s, the tensors are the run's own, and a tampered, mismatched or
damaged file, a foreign destination, a missing run or another run's snapshot are refused with nothing written."""
import hashlib
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from workbench.__main__ import main
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.oneshot import OneShot
from workbench.optimizers import available, load, load_file, names
from workbench import pipeline
from workbench.pipeline import Recipe, get_data, get_zoo, one_shot_gain, train_metanet
from workbench.run.ship import ShipError, ship

FAMILY, LAM, EVAL_NETWORKS = "mlp-relu", 0.01, 4
#: the run's training settings as its params.json records them (meta_<name> keys), which ship reads back
SETTINGS = dict(meta_epochs=1, meta_hidden=4, meta_n_layers=1, meta_batch_networks=4, meta_batch_images=32,
                meta_warmup_steps=1, device="cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder as `python -m workbench run` leaves it, at tiny sizes: one family's zoo, its ScaleGMN-B runs
    (CE, and L1 from scratch) and a GMN-B run that ship must leave alone, and params.json."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    data = get_data("digits", None, 0)
    zoo = get_zoo(run, FAMILY, data, n_networks=12, zoo_epochs=2, seed=0, progress=False, verbose=False)
    recipe = Recipe.from_values(SETTINGS)
    for method, objective in (("scalegmn", "ce"), ("scalegmn", "l1"), ("gmn", "ce")):
        train_metanet(run, zoo, data, recipe, method=method, objective=objective, lam=LAM, seed=0, progress=False)
    shared = {"seed": 0, "dataset": "digits", "families": [FAMILY], "objectives": ["ce", "l1"], "lam": LAM,
              "n_networks": 12, "zoo_epochs": 2, "eval_networks": EVAL_NETWORKS, **SETTINGS}
    (run / "params.json").write_text(json.dumps({"source": "params/tiny.yaml", "shared": shared, "sections": {},
                                                 "started": "2026-12-06 00:00 UTC", "git_revision": "abc1234"}))
    return run


@pytest.fixture(scope="module")
def shipped(tiny_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("shipped")
    records = ship(tiny_run, dest, fresh_networks=4, log=lambda *_: None)
    return dest, records


def test_ship_writes_the_runs_scalegmn_b_optimizers_with_their_measured_gain(tiny_run, shipped):
    dest, records = shipped
    assert [r["name"] for r in records] == names(dest) == ["mlp-relu-ce", "mlp-relu-l1"]
    data = get_data("digits", None, 0)
    zoo = get_zoo(tiny_run, FAMILY, data, n_networks=12, zoo_epochs=2, seed=0, progress=False, verbose=False)
    test = pipeline.test_networks(zoo, EVAL_NETWORKS)
    for record in records:
        folder = tiny_run / record["run"]["folder"]
        assert folder.name.startswith(f"{record['objective']}-scale-s0-")  # ScaleGMN-B, not the GMN-B ("-none-")
        model, loaded = load(record["name"], dest)
        assert loaded == record and model.spec == zoo.spec
        expected = load_model(folder / "best.pt")
        assert all(torch.equal(v, expected.state_dict()[k]) for k, v in model.state_dict().items())
        gain = one_shot_gain(test, data, expected.optimize(zoo.spec, test.params), seed=0)
        assert record["held_out"]["gain"] == pytest.approx({"estimate": gain.estimate, "lo": gain.lo, "hi": gain.hi,
                                                            "level": 0.95, "networks": EVAL_NETWORKS}, abs=1e-9)
        assert record["run"]["commit"] == "abc1234"
        assert record["run"]["params_sha256"] == hashlib.sha256((tiny_run / "params.json").read_bytes()).hexdigest()
        assert record["weights_sha256"] == hashlib.sha256((dest / f"{record['name']}.safetensors").read_bytes()
                                                          ).hexdigest()
        assert {t["variant"]: t["widths"] for t in record["transfers"]} == {
            "half widths": [64, 8, 8, 10], "double widths": [64, 32, 32, 10], "one layer fewer": [64, 16, 10],
            "one layer more": [64, 16, 16, 16, 10]}
        assert record["fresh_zoo"]["widths"] == [64, 16, 16, 10] and record["fresh_zoo"]["seed"] == 1
        assert ("l1_reduction" in record["held_out"]) == (record["objective"] == "l1")
    listed = available(dest)
    assert [s.name for s in listed] == ["mlp-relu-ce", "mlp-relu-l1"]
    assert listed[0].gain == records[0]["held_out"]["gain"]["estimate"] and listed[0].commit == "abc1234"


def test_a_shipped_optimizer_takes_a_measured_variant_as_its_measurement_says(shipped):
    """Each variant runs with a warning quoting its numbers when it worked, and is refused quoting them when not."""
    from torch import nn

    from workbench.interop import to_module
    from workbench.nets import init_params
    from workbench.training.oneshot import OneShotError, TransferWarning
    from workbench.training.transfer import variants, worked

    dest, _ = shipped
    for name in ("mlp-relu-ce", "mlp-relu-l1"):
        model, record = load(name, dest)
        optimizer = OneShot(model, name, record)
        for t in record["transfers"]:
            net = to_module(variants(model.spec)[t["variant"]], init_params(variants(model.spec)[t["variant"]], 1))
            g = t["gain"]
            quoted = re.escape(f"{t['variant']}, {'-'.join(map(str, t['widths']))}: accuracy {g['estimate']:+.1f} "
                               f"[{g['lo']:+.1f}, {g['hi']:+.1f}] points")
            if worked(t, record["objective"]):
                with pytest.warns(TransferWarning, match=quoted):
                    assert isinstance(optimizer(net), nn.Sequential)
            else:
                with pytest.raises(OneShotError, match=quoted):
                    optimizer(net)


def test_ship_regenerates_the_transfer_table_of_a_page(tiny_run, shipped, tmp_path):
    from workbench.run.ship import TRANSFER_BLOCK, transfer_block, update_docs

    page = tmp_path / "page.md"
    page.write_text(f"intro\n{TRANSFER_BLOCK[0]}\nstale 99.9\n{TRANSFER_BLOCK[1]}\noutro\n")
    update_docs(page, shipped[1])
    text = page.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    block = transfer_block(shipped[1])
    assert block in text and "Run `tiny` (commit abc1234" in block
    ce = shipped[1][0]
    for m in (ce["fresh_zoo"], *ce["transfers"]):
        g = m["gain"]
        assert f"| {g['estimate']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}] |" in block
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ShipError, match="no block"):
        update_docs(tmp_path / "bare.md", shipped[1])


def _copy(dest, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dest, out)
    return out


def test_tampered_mismatched_or_damaged_files_are_refused(shipped, tmp_path):
    folder = _copy(shipped[0], tmp_path)
    path = folder / "mlp-relu-ce.safetensors"
    record = json.loads(path.with_suffix(".json").read_text())
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the digest"):
        load_file(path)
    state = load_safetensors((shipped[0] / "mlp-relu-ce.safetensors").read_bytes())
    state["w_norm"] = torch.full_like(state["w_norm"], float("nan"))
    blob = save_safetensors(state)
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(json.dumps({**record, "weights_sha256": hashlib.sha256(blob).hexdigest()}))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_file(path)
    other = folder / "mlp-relu-l1.json"
    spec = json.loads(other.read_text())
    other.write_text(json.dumps({**spec, "spec": {**spec["spec"], "widths": [64, 16, 10]}}))
    with pytest.raises(CheckpointError, match="do not fit the metanetwork"):
        load("mlp-relu-l1", folder)
    other.write_text(json.dumps({**spec, "format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a provenance record of format"):
        load("mlp-relu-l1", folder)


def test_ship_refuses_another_runs_snapshot_a_foreign_destination_and_a_missing_run(tiny_run, shipped, tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "params.json").write_text("{}")
    with pytest.raises(ShipError, match="is not of this run"):
        ship(tiny_run, tmp_path / "dest", snapshot=snapshot, fresh_networks=4, log=lambda *_: None)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ShipError, match="holds files ship does not write"):
        ship(tiny_run, foreign, fresh_networks=4, log=lambda *_: None)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    broken = tmp_path / "broken-run"
    shutil.copytree(tiny_run, broken)
    for folder in (broken / "metanet" / FAMILY).glob("l1-scale-*"):
        shutil.rmtree(folder)
    dest = _copy(shipped[0], tmp_path)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(ShipError, match=r"no finished run of ScaleGMN-B for mlp-relu \(l1"):
        ship(broken, dest, fresh_networks=4, log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before  # nothing written


def test_ship_replaces_the_optimizers_of_an_earlier_run_and_the_cli_says_what_it_shipped(tiny_run, shipped, tmp_path,
                                                                                         capsys):
    dest = _copy(shipped[0], tmp_path)
    for suffix in (".json", ".safetensors"):  # an optimizer of an earlier run, of a family this run does not have
        shutil.copy(dest / f"mlp-relu-ce{suffix}", dest / f"cnn-tanh-ce{suffix}")
    assert main(["ship", str(tiny_run), "--dest", str(dest), "--fresh-networks", "4"]) == 0
    assert "shipped 2 optimizers" in capsys.readouterr().out
    assert names(dest) == ["mlp-relu-ce", "mlp-relu-l1"] and not (dest / "cnn-tanh-ce.json").exists()
