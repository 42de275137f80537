"""Data loaders: digits splits and normalisation, grayscale CIFAR-10 from (synthetic) local batches, clear errors."""
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from workbench.data import DataError, Dataset, load_cifar10_gs, load_dataset, load_digits_data


# -- digits ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=0)


def test_digits_shapes_and_dtypes(digits):
    assert digits.name == "digits"
    assert digits.image_shape == (1, 8, 8)
    assert digits.n_classes == 10
    sizes = [len(digits.split(s)[1]) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797
    assert sizes[0] == pytest.approx(0.6 * 1797, abs=10)
    assert sizes[1] == pytest.approx(0.2 * 1797, abs=10) and sizes[2] == pytest.approx(0.2 * 1797, abs=10)
    for split in ("train", "val", "test"):
        x, y = digits.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), 1, 8, 8)


def test_digits_split_is_stratified(digits):
    overall = np.bincount(np.concatenate([digits.split(s)[1].numpy() for s in ("train", "val", "test")]), minlength=10)
    for split, fraction in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        counts = np.bincount(digits.split(split)[1].numpy(), minlength=10)
        assert np.all(np.abs(counts - fraction * overall) <= 1), (split, counts)


def test_digits_normalised_with_train_statistics(digits):
    assert digits.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert digits.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    assert abs(digits.x_test.mean().item()) < 0.1  # same transform, not refitted on test


def test_digits_splits_are_disjoint_and_seeded(digits):
    rows = lambda d, s: {tuple(r) for r in d.split(s)[0].reshape(len(d.split(s)[1]), -1).numpy().round(4).tolist()}
    train, test = rows(digits, "train"), rows(digits, "test")
    # a handful of digits images are exact duplicates in the raw data; splits must not share more than those
    assert len(train & test) <= 5
    again = load_digits_data(seed=0)
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_val, digits.y_val)
    other = load_digits_data(seed=1)
    assert not torch.equal(other.y_train, digits.y_train)


def test_dataset_split_and_to(digits):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        digits.split("dev")
    moved = digits.to("cpu")
    assert isinstance(moved, Dataset) and torch.equal(moved.x_val, digits.x_val)
    assert "digits" in repr(digits)


def test_dataset_rejects_bad_shapes():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError, match="expected \\(N, C, H, W\\)"):
        Dataset("bad", x, y[:3], x, y, x, y)
    with pytest.raises(DataError, match="float32 images and int64 labels"):
        Dataset("bad", x.double(), y, x, y, x, y)


def test_load_dataset_by_name():
    assert load_dataset("digits").name == "digits"
    with pytest.raises(DataError, match="valid names are \\('digits', 'cifar10-gs'\\)"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="cifar10-gs needs path="):
        load_dataset("cifar10-gs")


# -- grayscale CIFAR-10 from synthetic batches ---------------------------------------------------------------------
N_PER_BATCH = 10


def _batch(rng, n, offset):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(offset + i) % 10 for i in range(n)]
    return {b"batch_label": b"synthetic", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}


def _write_cifar(folder, rng):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _batch(rng, N_PER_BATCH, i)
    batches["test_batch"] = _batch(rng, N_PER_BATCH, 0)
    # one known pixel: image 0 of test_batch, top-left: R=255, G=0, B=255 -> (1 - 1 + 1) / 3
    batches["test_batch"][b"data"][0, [0, 1024, 2048]] = [255, 0, 255]
    for name, batch in batches.items():
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    return batches


@pytest.fixture()
def cifar_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = _write_cifar(folder, np.random.default_rng(0))
    return folder, batches


def test_cifar_loader_shapes_grayscale_and_split(cifar_dir):
    folder, batches = cifar_dir
    data = load_cifar10_gs(folder, val_fraction=0.2, seed=0)
    assert data.name == "cifar10-gs" and data.image_shape == (1, 32, 32)
    assert len(data.y_train) == 40 and len(data.y_val) == 10 and len(data.y_test) == N_PER_BATCH
    assert sorted(data.y_val.tolist()) == list(range(10))  # stratified: one image per class
    assert data.x_train.min() >= -1 and data.x_train.max() <= 1
    assert data.x_test[0, 0, 0, 0].item() == pytest.approx(1 / 3, abs=1e-6)
    raw = batches["test_batch"][b"data"][3].reshape(3, 32, 32).astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(data.x_test[3, 0].numpy(), raw.mean(0), atol=1e-6)
    assert data.y_test.tolist() == batches["test_batch"][b"labels"]
    # the parent folder and the archive work too, with identical content
    parent = load_cifar10_gs(folder.parent, val_fraction=0.2, seed=0)
    assert torch.equal(parent.x_train, data.x_train)
    archive = folder.parent / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_tar = load_cifar10_gs(archive, val_fraction=0.2, seed=0)
    assert torch.equal(from_tar.x_val, data.x_val) and torch.equal(from_tar.y_train, data.y_train)
    assert torch.equal(load_dataset("cifar10-gs", path=archive).y_test, data.y_test)


def test_cifar_missing_path_and_files(tmp_path, cifar_dir):
    with pytest.raises(DataError, match="does not exist.*data_batch_1..5 and test_batch"):
        load_cifar10_gs(tmp_path / "nowhere")
    folder, _ = cifar_dir
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match="missing \\['data_batch_3'\\].*CIFAR-10 python version"):
        load_cifar10_gs(folder)


def test_cifar_malformed_content(cifar_dir):
    folder, _ = cifar_dir
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8)}, fh)
    with pytest.raises(DataError, match="data_batch_2: expected a dict with b'data' and b'labels'"):
        load_cifar10_gs(folder)
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 1000), np.uint8), b"labels": [0, 1, 2]}, fh)
    with pytest.raises(DataError, match="expected uint8 \\(N, 3072\\)"):
        load_cifar10_gs(folder)
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="could not read a CIFAR-10 batch"):
        load_cifar10_gs(folder)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code(cifar_dir):
    folder, _ = cifar_dir
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10_gs(folder)


def test_cifar_bad_archive(tmp_path):
    bogus = tmp_path / "cifar-10-python.tar.gz"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_cifar10_gs(bogus)
