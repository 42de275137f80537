"""Model zoos: many small trained networks with their metadata, the input data of every metanetwork.

One module per concept:

* :mod:`~workbench.zoo.specs`: each network family's architecture (:func:`default_spec`) and the per-network
  hyperparameters (:class:`HParamSpace`, :func:`sample_hparams`), in the spirit of the Small CNN Zoo (Unterthiner
  et al. 2020, "Predicting Neural Network Accuracy from Weights").
* :mod:`~workbench.zoo.train`: the vectorised training engine (:func:`train_networks`): all networks at once, each
  with its own minibatches, learning rate, L2 weight, dropout and optimizer (SGD with momentum or Adam).
* :mod:`~workbench.zoo.generation`: :func:`generate` a zoo (initialise, train, keep checkpoints at several epochs so
  the zoo spans weak to strong networks, evaluate) and :func:`load_or_generate` it from its on-disk cache.
* :mod:`~workbench.zoo.container`: the :class:`Zoo` (spec, batched params, one ``meta`` row per checkpoint), the
  network-level split of the ScaleGMN paper (:func:`split_networks`) and the disk format (safetensors + CSV +
  JSON manifest, never pickle, written atomically).
* :mod:`~workbench.zoo.small_cnn_zoo`: :func:`load_small_cnn_zoo` imports the published Small CNN Zoo files;
  :mod:`~workbench.zoo.small_cnn_zoo_split` chooses their checkpoints (``steps``) and gives each its network's
  reference split.
* :mod:`~workbench.zoo.optimized_output`: what ``python -m workbench optimize`` writes beside the new weights (the
  source's split, ``seen_in_training``, the input's metrics as ``*_before``).
"""
from .container import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    META_COLUMNS,
    META_FILE,
    PARAMS_FILE,
    SPLITS,
    Zoo,
    ZooError,
    split_networks,
)
from .generation import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINTS, DEFAULT_EPOCHS, generate, load_or_generate
from .small_cnn_zoo import SMALL_CNN_ZOO_REQUIRED, load_small_cnn_zoo, read_layout, small_cnn_zoo_counts
from .specs import FAMILIES, HPARAM_COLUMNS, OPTIMIZERS, HParamSpace, default_spec, sample_hparams
from .train import ADAM_BETAS, ADAM_EPS, SGD_MOMENTUM, train_networks

__all__ = [
    # specs
    "FAMILIES",
    "OPTIMIZERS",
    "HPARAM_COLUMNS",
    "default_spec",
    "HParamSpace",
    "sample_hparams",
    # train
    "train_networks",
    "SGD_MOMENTUM",
    "ADAM_BETAS",
    "ADAM_EPS",
    # generation
    "generate",
    "load_or_generate",
    "DEFAULT_EPOCHS",
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_BATCH_SIZE",
    # container
    "Zoo",
    "ZooError",
    "split_networks",
    "META_COLUMNS",
    "SPLITS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PARAMS_FILE",
    "META_FILE",
    # small_cnn_zoo
    "load_small_cnn_zoo",
    "read_layout",
    "small_cnn_zoo_counts",
    "SMALL_CNN_ZOO_REQUIRED",
]
