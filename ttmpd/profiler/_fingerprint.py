"""Device fingerprints: what must match for two latency measurements to be comparable."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata


@dataclass(frozen=True)
class DeviceFingerprint:
    """The device and settings a latency table was measured on.

    Every field except ``extra_info`` takes part in :meth:`device_key`: tables whose keys
    differ are not merged unless forced.
    """

    backend: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    threads: int
    inter_op_threads: int
    machine: str
    library_versions: tuple[tuple[str, str], ...]
    gpu_name: str = ""
    provider: str = ""
    graph_optimization: str = ""
    isa: str = ""
    kernel_isa: str = ""
    caches: str = ""
    gpu: str = ""
    extra_info: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def device_key(self) -> dict[str, object]:
        """The fields that must be equal for tables to be merged."""
        d = asdict(self)
        d.pop("extra_info")
        d["library_versions"] = dict(self.library_versions)
        return d

    def device_id(self) -> str:
        """12 hex digits of sha256 over :meth:`device_key`: equal ids, mergeable tables.
        A cluster node that measures for tables of this device carries the resource
        ``device:<id>``."""
        text = json.dumps(self.device_key(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["library_versions"] = dict(self.library_versions)
        d["extra_info"] = dict(self.extra_info)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeviceFingerprint:
        d = dict(d)
        d["library_versions"] = tuple(sorted(d.get("library_versions", {}).items()))
        d["extra_info"] = tuple(sorted(d.get("extra_info", {}).items()))
        return cls(**d)

    def differences(self, other: DeviceFingerprint) -> list[str]:
        """Human-readable ``field (a vs b)`` items where the device keys differ. The fields
        added after the first tables (:data:`LATER_FIELDS`) count only where both sides
        recorded them: an older table is not another device for lacking them."""
        a, b = self.device_key(), other.device_key()
        return [
            f"{k} ({a[k]} vs {b[k]})"
            for k in a
            if a[k] != b[k] and not (k in LATER_FIELDS and not (a[k] and b[k]))
        ]


LATER_FIELDS = ("isa", "kernel_isa", "caches", "gpu")
"""Fingerprint fields that tables written before them lack."""

ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd",
    "sve", "sve2",
)  # fmt: skip
"""CPU feature flags that change which kernels libraries dispatch to."""


@cache
def cpu_isa() -> str:
    """The :data:`ISA_FLAGS` this CPU reports in ``/proc/cpuinfo`` (comma-separated)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
                    break
    except OSError:
        return ""
    return ",".join(f for f in ISA_FLAGS if f in flags)


def kernel_isa() -> str:
    """The instruction sets the libraries in this process actually use: PyTorch's ATen CPU
    capability and the oneDNN/ATen ISA limits set in the environment (which emulate
    another host's kernels)."""
    parts = []
    try:
        import torch

        parts.append(f"aten={torch.backends.cpu.get_cpu_capability()}")
    except (ImportError, AttributeError, RuntimeError):  # torch is optional here
        pass
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        if os.environ.get(name):
            parts.append(f"{name}={os.environ[name]}")
    return ";".join(parts)


@cache
def cache_sizes() -> str:
    """CPU cache sizes as ``L1d=48K,L1i=32K,L2=1024K,L3=32768K`` (empty where unknown)."""
    out = []
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("index"))
    except OSError:
        return ""
    for entry in entries:
        try:
            with open(f"{root}/{entry}/level") as f:
                level = f.read().strip()
            with open(f"{root}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{root}/{entry}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        out.append(f"L{level}{suffix}={size}")
    return ",".join(out)


@cache
def cpu_info() -> tuple[str, int, int]:
    """``(cpu model name, physical cores, logical cores)`` of this machine."""
    model, cores = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            physical = core = None
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    model = value
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and core is not None:
                    cores.add((physical, core))
                    physical = core = None
            if core is not None:
                cores.add((physical, core))
    except OSError:
        pass
    logical = os.cpu_count() or 1
    return model, len(cores) or logical, logical


def library_versions(*names: str) -> tuple[tuple[str, str], ...]:
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "absent"))
    return tuple(out)


def host_fingerprint(backend: str, threads: int, inter_op_threads: int, **kw) -> DeviceFingerprint:
    """This host's fingerprint: CPU model, cores, ISA flags, the kernels' ISA, caches."""
    model, physical, logical = cpu_info()
    kw.setdefault("isa", cpu_isa())
    kw.setdefault("kernel_isa", kernel_isa())
    kw.setdefault("caches", cache_sizes())
    return DeviceFingerprint(
        backend=backend,
        cpu_model=model,
        physical_cores=physical,
        logical_cores=logical,
        threads=threads,
        inter_op_threads=inter_op_threads,
        machine=platform.machine(),
        **kw,
    )
