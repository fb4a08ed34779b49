"""Fingerprints tell devices apart by ISA and kernel ISA, not only by CPU model name."""

import os
import subprocess
import sys
from dataclasses import replace

from ttmpd._layout import ISA_VARIABLES
from ttmpd.profiler import get_backend
from ttmpd.profiler._fingerprint import ISA_FLAGS, DeviceFingerprint


def test_isa_flags_are_read_from_the_cpu():
    fp = get_backend("torch-cpu").fingerprint()
    with open("/proc/cpuinfo") as fh:
        flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), [])
    assert fp.isa.split(",") == [f for f in ISA_FLAGS if f in flags] or not flags


def test_another_isa_is_another_device():
    fp = get_backend("fake").fingerprint()
    other = replace(fp, isa="sse4_2,avx,avx2,fma,f16c")
    assert fp.isa != other.isa
    assert any(d.startswith("isa") for d in fp.differences(other))


def test_an_older_table_without_isa_is_not_another_device():
    fp = get_backend("fake").fingerprint()
    old = DeviceFingerprint.from_dict({**fp.to_dict(), "isa": "", "kernel_isa": "", "caches": ""})
    assert fp.differences(old) == []
    assert fp.differences(replace(fp, threads=fp.threads + 1)) != []


def test_emulated_avx2_kernels_change_the_fingerprint():
    code = (
        "from ttmpd.profiler import get_backend; "
        "print(get_backend('torch-cpu').fingerprint().kernel_isa)"
    )
    env_avx2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/usr/bin"}
    # this host's own kernels, even where the suite itself runs under emulation
    native = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES}
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=native).stdout  # fmt: skip
    avx2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env_avx2).stdout  # fmt: skip
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in avx2 and "aten=AVX2" in avx2
    assert here != avx2
