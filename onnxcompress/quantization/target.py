"""Deployment targets: what a quantized model is built for, named explicitly and resolved without looking at the
machine that runs the tool (except ``auto``, which says so).

The one choice that depends on the CPU is the weight range of uint8 x int8 (u8s8) kernels. x86 CPUs without
VNNI multiply u8 x s8 pairs with ``vpmaddubsw``, which adds two products in int16 and saturates with full-range
int8 weights; 7-bit weights keep every sum exact. CPUs with AVX512-VNNI, AVX-VNNI or AMX (and ARM64 dot-product
kernels) accumulate in int32 and run full 8-bit weights exactly. So:

``cpu`` (default, portable) and ``cpu-avx2``: uint8 activations, 7-bit weights: exact on every x86 and ARM CPU.
``cpu-vnni`` and ``arm64``: uint8 activations, 8-bit weights: more precise, for CPUs known to have those kernels.
``cuda`` / ``tensorrt``: int8 symmetric activations, 8-bit weights.
``auto``: resolved on this host to ``cpu-vnni``, ``cpu-avx2`` or ``arm64``, and recorded as such.
The resolved target is written into the effective recipe, the report and the model's metadata.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np

TARGETS = ("cpu", "cpu-avx2", "cpu-vnni", "arm64", "cuda", "tensorrt", "auto")
CPU_TARGETS = ("cpu", "cpu-avx2", "cpu-vnni", "arm64")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86 = ("x86_64", "amd64", "i686", "x86")
ARM = ("aarch64", "arm64", "armv8l")


@dataclass(frozen=True)
class HostFacts:
    """What ``auto`` looks at: the machine type and the CPU flags."""

    machine: str
    flags: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.machine.lower() in X86

    @property
    def vnni(self) -> bool:
        return any(f in self.flags for f in VNNI_FLAGS)


def host_facts() -> HostFacts:
    """This machine's type and CPU flags (Linux /proc/cpuinfo; numpy's CPU feature table elsewhere)."""
    machine = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
        flags = frozenset(line.partition(":")[2].split())
    except OSError:

        features = (getattr(np, "_core", None) or np.core)._multiarray_umath.__cpu_features__
        flags = frozenset(name.lower().replace("avx512vnni", "avx512_vnni") for name, on in features.items() if on)
    return HostFacts(machine, flags)


@dataclass(frozen=True)
class Target:
    """A resolved target: its name, the onnxruntime provider that verifies it, activation dtype, weight bits."""

    name: str
    provider: str
    activation_dtype: str
    weight_bits: int
    reason: str

    @property
    def reduce_range(self) -> bool:
        return self.weight_bits == 7


_PORTABLE = "7-bit weights: exact on every x86 CPU (u8s8 kernels without VNNI add pairs of products in int16)"
_FULL = "8-bit weights: VNNI/AMX (x86) and dot-product (ARM64) kernels accumulate u8 x s8 in int32"


def resolve_target(name: str, host: HostFacts | None = None) -> Target:
    """The target ``name`` stands for; only ``auto`` reads ``host`` (default: this machine)."""
    if name == "auto":
        host = host if host is not None else host_facts()
        if host.machine.lower() in ARM:
            resolved = "arm64"
        else:
            resolved = "cpu-vnni" if host.x86 and host.vnni else "cpu-avx2"
        target = resolve_target(resolved)
        return Target(target.name, target.provider, target.activation_dtype, target.weight_bits,
                      f"auto on this host ({host.machine}, VNNI {'yes' if host.vnni else 'no'}): {target.reason}")
    if name in ("cpu", "cpu-avx2"):
        return Target(name, "cpu", "uint8", 7, ("portable, " if name == "cpu" else "") + _PORTABLE)
    if name in ("cpu-vnni", "arm64"):
        return Target(name, "cpu", "uint8", 8, _FULL)
    if name in ("cuda", "tensorrt"):
        return Target(name, name, "int8", 8, f"{name}: int8 symmetric activations, 8-bit weights")
    raise ValueError(f"unknown target {name!r}")
