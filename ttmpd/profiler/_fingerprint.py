"""Device fingerprints: what must match for two latency measurements to be comparable."""

from __future__ import annotations

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
    extra_info: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def device_key(self) -> dict[str, object]:
        """The fields that must be equal for tables to be merged."""
        d = asdict(self)
        d.pop("extra_info")
        d["library_versions"] = dict(self.library_versions)
        return d

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
        """Human-readable ``field (a vs b)`` items where the device keys differ."""
        a, b = self.device_key(), other.device_key()
        return [f"{k} ({a[k]} vs {b[k]})" for k in a if a[k] != b[k]]


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
    model, physical, logical = cpu_info()
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
