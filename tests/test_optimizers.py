"""The optimizers shipped in workbench/optimizers/: one per family and objective of the default run, each with a
provenance record that matches the run's committed snapshot (docs/results/default: the same params.json, the same
commit), tensors that fit the architecture it names, at most 1 MB in all -- and (slow) a one shot that improves a
freshly generated zoo of another seed by at least the lower end of the held-out gain's interval it records."""
import hashlib
import json
from pathlib import Path

import pytest

from workbench import OneShot
from workbench.optimizers import FOLDER, available, load, names
from workbench.symmetry import group_for
from workbench.zoo import default_spec

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "docs" / "results" / "default"
SHIPPED = names()


def _snapshot_params() -> dict:
    return json.loads((SNAPSHOT / "params.json").read_text())


def test_every_family_and_objective_of_the_default_run_is_shipped_within_1_mb():
    shared = _snapshot_params()["shared"]
    assert SHIPPED == sorted(f"{f}-{o}" for f in shared["families"] for o in shared["objectives"])
    total = sum(p.stat().st_size for p in FOLDER.iterdir() if p.suffix in (".json", ".safetensors"))
    assert total <= 1_000_000, f"the shipped optimizers take {total:,} bytes"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_optimizer_matches_the_snapshot_of_the_run_that_trained_it(name):
    model, record = load(name)
    family, objective = name.rsplit("-", 1)
    assert (record["family"], record["objective"], record["method"]) == (family, objective, "ScaleGMN-B")
    run_info = json.loads((SNAPSHOT / "run_info.json").read_text())
    params = (SNAPSHOT / "params.json").read_bytes()
    assert record["run"]["params_sha256"] == hashlib.sha256(params).hexdigest()
    assert record["run"]["commit"] == run_info["git_revision"] and record["run"]["name"] == run_info["run"]
    shared = json.loads(params)["shared"]
    spec = default_spec(family, shared["dataset"])
    assert model.spec == spec and record["zoo"]["architecture"] == spec.describe()
    assert record["zoo"]["dataset"] == shared["dataset"] and record["zoo"]["n_networks"] == shared["n_networks"]
    assert record["lam"] == (shared["lam"] if objective == "l1" else 0.0)
    assert model.symmetry == group_for(spec) and model.bidirectional
    assert record["metanet"]["hidden"] == shared["meta_hidden"] and record["metanet"]["n_layers"] == shared[
        "meta_n_layers"]
    gain = record["held_out"]["gain"]
    assert gain["lo"] <= gain["estimate"] <= gain["hi"] and gain["networks"] == shared["eval_networks"]


def test_available_lists_every_shipped_optimizer_with_its_gain():
    listed = available()
    assert [s.name for s in listed] == SHIPPED
    for s in listed:
        assert f"{s.gain:+.1f} [{s.gain_lo:+.1f}, {s.gain_hi:+.1f}] points" in str(s)


@pytest.fixture(scope="module")
def fresh_zoos():
    """Per family, a zoo generated like the run's (the record's settings) with zoo seed 2: networks neither the run
    nor ship's own fresh zoo (seed 1) held."""
    from workbench.pipeline import get_data
    from workbench.run.ship import fresh_zoo

    zoos = {}
    for family in sorted({name.rsplit("-", 1)[0] for name in SHIPPED}):
        record = load(f"{family}-ce")[1]["zoo"]
        data = get_data(record["dataset"], None, record["seed"])
        zoos[family] = (fresh_zoo(default_spec(family, record["dataset"]), data, record, 64, 2), data)
    return zoos


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_optimizer_improves_a_fresh_zoo_by_at_least_its_recorded_lower_bound(name, fresh_zoos):
    from workbench.run.ship import measure

    optimizer = OneShot.load(name)
    zoo, data = fresh_zoos[name.rsplit("-", 1)[0]]
    record = optimizer.provenance
    measured = measure(optimizer.model, zoo, data, lam=record["lam"], seed=0)
    assert measured["gain"]["estimate"] >= record["held_out"]["gain"]["lo"], measured["gain"]
    if "l1_reduction" in record["held_out"]:
        assert measured["l1_reduction"]["estimate"] >= record["held_out"]["l1_reduction"]["lo"]


def test_the_transfer_table_of_docs_oneshot_is_the_rendering_of_the_shipped_records():
    from workbench.run.ship import TRANSFER_BLOCK, transfer_block

    text = (ROOT / "docs" / "oneshot.md").read_text()
    block = text.split(TRANSFER_BLOCK[0] + "\n", 1)[1].split(TRANSFER_BLOCK[1], 1)[0]
    assert block == transfer_block([s.record for s in available()]), "regenerate it: workbench ship ... --docs"
