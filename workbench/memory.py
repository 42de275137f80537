"""Memory budgets: how much one evaluation of many networks may allocate, and the chunks that keep it there.

:func:`workbench.objective.evaluate` scores B networks on N images in chunks of networks x images. Unbounded, the
chunk grows with the zoo: on grayscale CIFAR-10 one Small CNN Zoo network costs about 32 KB per image (its 16 x 15 x
15 first feature map, twice, while the activation is applied), so 1,024 networks x 4,096 images would need about
125 GiB. :func:`eval_chunks` sizes the chunk from the architecture instead, so that it stays within a budget:

* ``WORKBENCH_MEMORY_GB`` (GiB per process; the runner sets it from a params file's ``memory_gb``), else
* :data:`CPU_SHARE` of this machine's memory on a CPU, :data:`GPU_SHARE` of the device's memory on a GPU.

The chunk's bytes come from :func:`eval_bytes_per_network_image`, a model of what :func:`workbench.forward_pass.forward`
holds at once (two copies of the largest feature map -- the pre-activation and the activation -- plus the next
one); measured peaks (bench/memory.py, docs/paper_setting.md) are at most this model on every family of the
workbench.
"""
from __future__ import annotations

import math
import os

import torch

from .errors import WorkbenchError
from .forward_pass import conv_route
from .nets import NetSpec

__all__ = ["MemoryBudgetError", "MEMORY_ENV", "CPU_SHARE", "GPU_SHARE", "EVAL_IMAGE_CHUNK", "budget_bytes",
           "default_budget_bytes", "physical_memory_bytes", "eval_bytes_per_network_image", "eval_bytes_per_image",
           "eval_bytes_per_network", "eval_chunk_bytes", "eval_chunks", "sgd_bytes_per_network", "sgd_chunk", "GIB"]

GIB = 2**30
MEMORY_ENV = "WORKBENCH_MEMORY_GB"
CPU_SHARE = 0.25  # per process: notebooks run up to `workers` processes side by side
GPU_SHARE = 0.5   # the rest holds the metanetwork, its optimizer, the data set and the allocator's cache
EVAL_IMAGE_CHUNK = 4096  # images per chunk while one network's share of the budget allows (fewer passes over weights)


class MemoryBudgetError(WorkbenchError, ValueError):
    """The memory budget cannot hold the smallest piece of work asked for (one network and one image, one training
    batch), or ``WORKBENCH_MEMORY_GB`` is not a positive number."""


def physical_memory_bytes() -> int:
    """This machine's physical memory (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def parse_budget_gb(raw: str, where: str = MEMORY_ENV) -> float:
    """A budget in GiB from text: a finite number > 0 (a MemoryBudgetError naming ``where`` otherwise)."""
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise MemoryBudgetError(f"{where} is {raw[:40]!r}, but must be a number of GiB > 0 (e.g. 8 or 0.5); set it "
                                "to such a number or unset it for the default share of this machine's memory")
    return value


def default_budget_bytes(device: torch.device | str = "cpu") -> int:
    """:data:`GPU_SHARE` of a CUDA device's memory, else :data:`CPU_SHARE` of this machine's (4 GiB when unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(GPU_SHARE * torch.cuda.get_device_properties(device).total_memory)
    physical = physical_memory_bytes()
    return int(CPU_SHARE * physical) if physical else 4 * GIB


def budget_bytes(device: torch.device | str = "cpu") -> int:
    """The memory one evaluation chunk may use on ``device``: ``WORKBENCH_MEMORY_GB`` when set, else the default."""
    raw = os.environ.get(MEMORY_ENV, "")
    if raw.strip():
        return int(parse_budget_gb(raw) * GIB)
    return default_budget_bytes(device)


def _feature_sizes(spec: NetSpec, image_size: int | None) -> list[int]:
    """Elements per image of every layer output of one network (hidden feature maps, the pooled features, logits)."""
    if spec.kind == "mlp":
        return list(spec.widths[1:])
    sizes = spec.spatial_sizes(image_size)
    maps = [c * s * s for c, s in zip(spec.widths[1:spec.n_conv + 1], sizes[1:])]
    return maps + [spec.widths[spec.n_conv], spec.widths[-1]]


def eval_bytes_per_network_image(spec: NetSpec, image_size: int | None = None, itemsize: int = 4) -> int:
    """Bytes one network adds per image to a no-grad forward pass: the largest layer output twice (pre-activation and
    activation alive together), the next largest once, and the logits three times (float copy, argmax, CE)."""
    sizes = sorted(_feature_sizes(spec, image_size), reverse=True)
    second = sizes[1] if len(sizes) > 1 else 0
    return itemsize * (2 * sizes[0] + second + 3 * spec.n_classes)


def eval_bytes_per_image(spec: NetSpec, image_size: int | None = None, itemsize: int = 4) -> int:
    """Bytes per image shared by all networks of a chunk: the images, and the layer-0 patches of the dense route."""
    if spec.kind == "mlp":
        return itemsize * (spec.widths[0] + 1)
    size = spec.image_size if image_size is None else image_size
    patches = spec.spatial_sizes(size)[1] ** 2 * spec.widths[0] * spec.kernel_size**2
    dense = conv_route(spec, size) == "dense"
    return itemsize * (spec.widths[0] * size * size + (2 * patches if dense else 0) + 1)


def eval_bytes_per_network(spec: NetSpec, image_size: int | None = None, itemsize: int = 4) -> int:
    """Bytes per network independent of the images: its parameters (and a copy), and for CNNs on the dense route
    (:func:`workbench.forward_pass.conv_route`) the dense matrices of conv layers 1.."""
    total = 2 * spec.n_params
    if spec.kind == "cnn" and conv_route(spec, spec.image_size if image_size is None else image_size) == "dense":
        sizes = spec.spatial_sizes(image_size)
        for layer in range(1, spec.n_conv):
            total += sizes[layer] ** 2 * spec.widths[layer] * sizes[layer + 1] ** 2 * spec.widths[layer + 1]
    return itemsize * total


def eval_chunk_bytes(spec: NetSpec, n_networks: int, n_images: int, image_size: int | None = None,
                     itemsize: int = 4) -> int:
    """The modelled peak of evaluating ``n_networks`` x ``n_images`` at once."""
    return (n_networks * n_images * eval_bytes_per_network_image(spec, image_size, itemsize)
            + n_images * eval_bytes_per_image(spec, image_size, itemsize)
            + n_networks * eval_bytes_per_network(spec, image_size, itemsize))


def eval_chunks(spec: NetSpec, n_networks: int, n_images: int, budget: int, image_size: int | None = None,
                itemsize: int = 4) -> tuple[int, int]:
    """``(networks, images)`` per chunk for evaluating ``n_networks`` on ``n_images`` within ``budget`` bytes:
    up to :data:`EVAL_IMAGE_CHUNK` images (fewer only when one network on that many would not fit), then as many
    networks as fit. A budget below one network on one image is a :class:`MemoryBudgetError`."""
    per_pair = eval_bytes_per_network_image(spec, image_size, itemsize)
    per_image = eval_bytes_per_image(spec, image_size, itemsize)
    per_net = eval_bytes_per_network(spec, image_size, itemsize)
    images = max(1, min(n_images, EVAL_IMAGE_CHUNK))
    if eval_chunk_bytes(spec, 1, images, image_size, itemsize) > budget:
        images = (budget - per_net) // (per_pair + per_image)
    if images < 1:
        raise MemoryBudgetError(
            f"a memory budget of {budget / GIB:.3g} GiB cannot hold one {spec.describe()} network on one image "
            f"(about {(per_pair + per_image + per_net) / GIB:.3g} GiB); raise {MEMORY_ENV} (memory_gb)")
    networks = (budget - images * per_image) // (images * per_pair + per_net)
    return int(max(1, min(n_networks, networks))), int(images)


def sgd_bytes_per_network(spec: NetSpec, batch_images: int = 64, image_size: int | None = None,
                          itemsize: int = 4) -> int:
    """Bytes one network adds to an SGD step on ``batch_images`` images (:func:`workbench.baselines.sgd.sgd_finetune`):
    every layer output twice (kept for the backward pass, and its gradient) plus the largest once more, per image;
    its parameters, their gradient, the momentum and a copy. Measured on the Small CNN Zoo CNN: about 0.8 of this
    (bench/paper_setting.py, docs/paper_setting.md)."""
    sizes = _feature_sizes(spec, image_size)
    return itemsize * (batch_images * (2 * sum(sizes) + max(sizes)) + 4 * spec.n_params)


def sgd_chunk(spec: NetSpec, n_networks: int, budget: int, batch_images: int = 64, image_size: int | None = None,
              itemsize: int = 4) -> int:
    """Networks per chunk of an SGD run (``net_chunk`` of :func:`workbench.baselines.sgd.sgd_finetune`) within
    ``budget`` bytes: at least 1, at most ``n_networks``."""
    per_network = sgd_bytes_per_network(spec, batch_images, image_size, itemsize)
    return int(max(1, min(n_networks, budget // per_network)))
