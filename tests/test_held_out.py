"""The one held-out set every method is scored on (whole networks, all their checkpoints), gains per checkpoint
epoch, training-set subsampling, a second zoo of a family in its own cache folder, and the lambda sweep tuned on
validation networks."""

import numpy as np
import pytest
import torch

from workbench import pipeline
from workbench.objective import evaluate
from workbench.zoo import Zoo

from recipes import tiny_recipe


def _ids(z):
    return sorted(set(z.meta["net_id"].tolist()))


def test_test_networks_keeps_whole_held_out_networks(zoo, tmp_path):
    all_test = pipeline.test_networks(zoo)
    assert set(all_test.meta["split"]) == {"test"}
    assert len(all_test) == int((zoo.meta["split"] == "test").sum())
    capped = pipeline.test_networks(zoo, 3)
    ids = _ids(capped)
    assert ids == _ids(all_test)[:3]  # the first networks by net_id
    assert len(capped) == 3 * 3  # every checkpoint of each of them
    assert capped.meta.groupby("net_id")["epoch"].apply(sorted).tolist() == [[0, 1, 2]] * 3
    # the same set whatever the zoo object: reloaded from disk, or with the entries in another order
    zoo.save(tmp_path / "z")
    assert _ids(pipeline.test_networks(Zoo.load(tmp_path / "z"), 3)) == ids
    order = np.random.RandomState(0).permutation(len(zoo))
    shuffled = Zoo(zoo.spec, [(w[order], b[order]) for w, b in zoo.params], zoo.meta.iloc[order], zoo.dataset,
                   zoo.split_seed)
    again = pipeline.test_networks(shuffled, 3)
    assert _ids(again) == ids
    key = lambda z: sorted(zip(z.meta["net_id"], z.meta["epoch"], z.params[0][1][:, 0].tolist()))
    assert key(again) == key(capped)


def test_initial_scores_are_measured_on_the_test_networks(zoo, digits):
    frame = pipeline.initial_scores(digits, {"mlp-tanh": zoo}, lam=0.01, eval_networks=4)
    held = pipeline.test_networks(zoo, 4)
    m = evaluate(zoo.spec, held.params, digits.x_test, digits.y_test, 0.01)
    mask = pipeline.trained_mask(held)
    assert mask.tolist() == (held.meta["epoch"] >= 1).tolist() and 0 < mask.sum() < len(held)
    row = frame.iloc[0]
    assert row["acc"] == pytest.approx(100 * float(m["acc"].double().mean()))
    assert row["acc_trained"] == pytest.approx(100 * float(m["acc"][torch.as_tensor(mask)].double().mean()))
    assert row["loss"] == pytest.approx(float(m["loss"].double().mean()), rel=1e-6)
    assert row["acc_trained"] > row["acc"]  # trained checkpoints beat the untrained ones


def test_gain_by_checkpoint_groups_entries_by_epoch(zoo):
    held = pipeline.test_networks(zoo)
    epochs = held.meta["epoch"].to_numpy()
    before = np.where(epochs == 0, 0.1, 0.5)
    after = before + np.select([epochs == 0, epochs == 1], [0.0, 0.2], 0.1)
    frame = pipeline.gain_by_checkpoint(held, before, after).set_index("checkpoint")
    assert list(frame.index) == ["0", "1", "2", "trained", "all"]
    n = len(held) // 3
    assert frame["entries"].tolist() == [n, n, n, 2 * n, 3 * n]
    assert frame["gain"].to_dict() == pytest.approx({"0": 0.0, "1": 20.0, "2": 10.0, "trained": 15.0, "all": 10.0})
    assert frame.loc["trained", "before"] == pytest.approx(50.0)
    assert frame.loc["all", "after"] == pytest.approx(100 * float(np.mean(after)))


def test_subsample_train_draws_training_networks_and_keeps_held_out_ones(zoo):
    n_train = len(_ids(zoo.subset(split="train")))
    sub = pipeline.subsample_train(zoo, 3, seed=0)
    for split in ("val", "test"):
        assert _ids(sub.subset(split=split)) == _ids(zoo.subset(split=split))
    kept = sub.subset(split="train")
    assert len(_ids(kept)) == 3 and len(kept) == 3 * 3  # whole networks
    assert set(_ids(kept)) <= set(_ids(zoo.subset(split="train")))
    assert _ids(pipeline.subsample_train(zoo, 3, seed=0).subset(split="train")) == _ids(kept)
    draws = {tuple(_ids(pipeline.subsample_train(zoo, 3, seed=s).subset(split="train"))) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    assert len(_ids(pipeline.subsample_train(zoo, n_train).subset(split="train"))) == n_train
    for bad in (0, n_train + 1):
        with pytest.raises(ValueError, match="n_train_networks must lie in"):
            pipeline.subsample_train(zoo, bad)


def test_a_second_zoo_of_a_family_gets_its_own_cache_folder(digits, tmp_path):
    """Notebook 07's bigger scaling zoo must not overwrite the run's main zoo of the same family (and back)."""
    args = dict(zoo_epochs=2, seed=0, progress=False, verbose=False, test_fraction=0.5)
    main = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, **args)
    big = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=10, cache_suffix="-n10", **args)
    assert (tmp_path / "zoo" / "mlp-tanh").is_dir() and (tmp_path / "zoo" / "mlp-tanh-n10").is_dir()
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*") if p.is_file()}
    again = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, **args)
    again_big = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=10, cache_suffix="-n10", **args)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*") if p.is_file()} == stamp  # loaded
    assert len(again) == len(main) and len(again_big) == len(big) > len(main)
    with pytest.raises(ValueError, match="cache_suffix"):
        pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, cache_suffix="/../x", **args)


def test_lam_sweep_tunes_the_sgd_reference_per_lambda_on_validation_networks(zoo, digits, tmp_path):
    from workbench.baselines.warmstart import tune_sgd_lr

    recipe = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu")
    grid = [1e-4, 0.3]
    sweep = pipeline.lam_sweep(tmp_path, zoo, digits, recipe, [0.01, 0.03], sgd_epochs=(1,), sgd_lr=0.05,
                               sgd_lr_grid=grid, sgd_networks=1, progress=False)
    sgd = sweep[(sweep["kind"] == "sgd") & (sweep["epochs"] == 1)]
    assert len(sgd) == 2 and set(sgd["sgd_lr"]) <= set(grid) and set(sgd["label"]) == {"SGD (1 epoch)"}
    assert sweep.loc[sweep["kind"] != "sgd", "sgd_lr"].isna().all()
    assert sweep["chosen"].sum() <= 1 and set(sweep.loc[sweep["chosen"], "kind"]) <= {"one_shot"}
    val = zoo.subset(split="val")
    first = val.subset(mask=(val.meta["net_id"] == val.meta["net_id"].min()).to_numpy())
    for lam, lr in zip(sgd["lam"], sgd["sgd_lr"]):  # the tuner's own choice on the first validation network
        assert lr == tune_sgd_lr(zoo.spec, first.params, digits, lrs=grid, epochs=1, lam=lam)[0]
    fixed = pipeline.lam_sweep(tmp_path, zoo, digits, recipe, [0.01], sgd_epochs=(1,), sgd_lr=0.05, progress=False)
    assert list(fixed.loc[fixed["kind"] == "sgd", "sgd_lr"]) == [0.05]  # no grid: the given rate
