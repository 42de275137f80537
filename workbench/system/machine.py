"""What a run's numbers were measured on: the CPU and what it can do, memory, GPU, and the library versions.

Two machines can both call themselves "AMD EPYC" and still compute differently: one dispatches torch's AVX-512
kernels, the other AVX2 ones, and the float rounding of every reduction differs. So the record names the CPU's
capability (:func:`cpu_capability`) besides its model; the runner writes it into the run's ``params.json`` when the
run starts, and the results report reads it from there (not from the machine that writes the report).
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

__all__ = ["LIBRARIES", "cpu_flags", "cpu_capability", "machine_description"]

#: the libraries whose versions a run records (they compute or render its numbers)
LIBRARIES = ("torch", "torch_geometric", "numpy", "pandas", "scikit-learn", "plotly", "papermill")
#: the instruction-set extensions that change what torch computes or how fast
_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The extensions of :data:`_FLAGS` this CPU reports (``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in _FLAGS if f in have]
    except OSError:
        pass
    return []


def cpu_capability() -> str:
    """The kernel set torch dispatches to on this CPU (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...), which the
    environment variable ``ATEN_CPU_CAPABILITY`` can lower; plus ``"+bf16"`` when the CPU multiplies bf16 in
    hardware (avx512_bf16 or AMX)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    return capability + ("+bf16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_description() -> dict:
    """CPU model, capability and flags, cores, memory, torch threads, the GPU when present, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_capability": cpu_capability(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "os": platform.platform(terse=True), **_versions()}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
