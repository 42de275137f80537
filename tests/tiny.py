"""Tiny zoos and metanetwork checkpoints for the command tests (seconds to build): a digits CNN zoo of a few networks
and ``best.pt`` files written as ``train()`` writes them; a full disk (:func:`file_size_limit`) and a folder's
contents (:func:`listing`) for the tests that nothing is lost."""
from __future__ import annotations

import contextlib
import resource
import signal
from pathlib import Path

import torch

from workbench.data import load_dataset
from workbench.metanet import MetanetConfig
from workbench.nets import NetSpec
from workbench.training.train_config import TrainConfig, build_model
from workbench.zoo import Zoo, generate

METANET = TrainConfig(epochs=1, batch_networks=4, batch_images=32, warmup_steps=1, device="cpu",
                      meta=MetanetConfig(hidden=4, n_layers=1))


def cnn_spec(activation: str = "relu") -> NetSpec:
    return NetSpec.cnn(1, (3, 3), 10, kernel_size=3, stride=2, padding=1, activation=activation, image_size=8)


def make_zoo(folder: Path, n_networks: int = 4, activation: str = "relu") -> Zoo:
    """A digits CNN zoo of ``n_networks`` networks x checkpoints 0 and 1, saved to ``folder``."""
    zoo = generate(cnn_spec(activation), load_dataset("digits", seed=0), n_networks, epochs=1, checkpoints=[0],
                   seed=0, progress=False)
    zoo.save(folder)
    return zoo


def scaled(zoo: Zoo, factor: float, dtype: torch.dtype | None = None, rows=None) -> Zoo:
    """``zoo`` with the weights of entries ``rows`` (all: None) multiplied by ``factor``, optionally cast."""
    params = []
    for w, b in zoo.params:
        w, b = w.double().clone(), b.double().clone()  # scaled in float64, then cast (float8 has no arithmetic)
        index = slice(None) if rows is None else torch.as_tensor(rows)
        w[index] *= factor
        b[index] *= factor
        params.append((w.to(dtype or zoo.params[0][0].dtype), b.to(dtype or zoo.params[0][0].dtype)))
    return Zoo(zoo.spec, params, zoo.meta, zoo.dataset, zoo.split_seed, dict(zoo.info))


def checkpoint(path: Path, zoo: Zoo, scramble: float = 0.0, edit=None, config: TrainConfig = METANET) -> Path:
    """An untrained metanetwork for ``zoo`` written at ``path`` like ``best.pt``. At initialisation the metanet returns
    its input; ``scramble`` adds Gaussian noise of that size to every weight so that it does not. ``edit(state)``
    may tamper with the state dict before it is saved."""
    torch.manual_seed(0)
    model = build_model(zoo.spec, config).fit_normalization(zoo.params)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scramble * torch.randn_like(p))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if edit is not None:
        edit(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": zoo.spec.to_dict(), "config": config.to_dict(), "model": state}, path)
    return path


@contextlib.contextmanager
def file_size_limit(n_bytes: int):
    """Writes past ``n_bytes`` in one file fail with EFBIG ("File too large") for the block, as writes on a full disk
    fail (RLIMIT_FSIZE, with SIGXFSZ ignored so that the write raises instead of killing the process)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def listing(root: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``root`` (what a failed command must leave as it was)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
