"""``torchvision:NAME`` / ``timm:NAME?k=v`` specs: weight-free builds, clear errors, and the
stand-in ``torchvision::nms`` for CPU-only torch (docs/design/zoo-on-cpu-torch.md)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import urllib.request

import pytest
import torch

from ttmpd.errors import ModelLoadError
from ttmpd.models import load_model
from ttmpd.models._sources import _nms_cpu, import_torchvision, parse_source_spec

pytestmark = [
    pytest.mark.zoo,
    pytest.mark.skipif(
        importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
        reason="torchvision/timm not installed (pip install 'ttmpd[zoo]')",
    ),
]

VIT_28 = "timm:vit_tiny_patch16_224?img_size=28,in_chans=1,patch_size=4,num_classes=10"


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- torchvision ----------------------------------------------------------------------------


def test_resnet18_has_torchvision_documented_size_and_1000_classes():
    model = load_model("torchvision:resnet18").eval()
    assert _num_params(model) == 11_689_512  # torchvision's documented ResNet18 size
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "regnet_x_400mf"])
def test_builds_and_runs_with_the_size_its_weights_document(name):
    tv_models = import_torchvision().models
    documented = tv_models.get_model_weights(name).DEFAULT.meta["num_params"]
    model = load_model(f"torchvision:{name}").eval()
    assert _num_params(model) == documented
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_spec_arguments_reach_the_builder():
    model = load_model("torchvision:resnet18?num_classes=7,zero_init_residual=true")
    assert model.fc.out_features == 7
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0  # zero_init_residual=True


def test_module_factory_form_still_works():
    model = load_model("torchvision.models:resnet18", num_classes=3)
    assert model.fc.out_features == 3


# --- timm -----------------------------------------------------------------------------------


def test_timm_vit_with_spec_arguments():
    model = load_model(VIT_28).eval()
    assert model.patch_embed.proj.in_channels == 1
    assert model.patch_embed.proj.kernel_size == (4, 4)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_call_arguments_join_the_spec_arguments():
    model = load_model("timm:resnet10t?in_chans=1", num_classes=4)
    assert model.conv1[0].in_channels == 1 and model.fc.out_features == 4
    with pytest.raises(ModelLoadError, match="num_classes given both"):
        load_model("timm:resnet10t?num_classes=3", num_classes=4)


# --- nothing is downloaded ------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any download attempt raises (and an empty hub cache, so none is served from disk)."""
    tv = import_torchvision()
    import timm  # noqa: F401  (imported before the sockets close: importing must not need them)

    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise AssertionError(f"download attempted: {args[:2]!r}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tv.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize(
    "spec",
    [
        "torchvision:resnet18",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",  # its backbone defaults to weights
        "timm:resnet10t",
        VIT_28,
    ],
)
def test_nothing_is_downloaded(no_network, spec):
    assert isinstance(load_model(spec), torch.nn.Module)
    assert no_network == []


@pytest.mark.parametrize(
    ("spec", "arg"),
    [
        ("torchvision:resnet18?weights=DEFAULT", "weights"),
        ("timm:resnet10t?pretrained=true", "pretrained"),
    ],
)
def test_weight_arguments_are_refused(spec, arg):
    with pytest.raises(ModelLoadError, match=f"without pretrained weights; drop {arg}") as info:
        load_model(spec)
    _one_line(info)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("torchvision:resnet5", ("resnet50", "resnet18", "torchvision.models.list_models()")),
        ("timm:vit_tiny_patch16", ("vit_tiny_patch16_224", "timm.list_models")),
    ],
)
def test_unknown_name_lists_close_matches(spec, expected):
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    message = _one_line(info)
    assert f"unknown {spec.split(':')[0]} model {spec.split(':')[1]!r}" in message
    assert all(word in message for word in expected)


@pytest.mark.parametrize(
    ("hidden", "spec", "missing"),
    [
        (("torchvision",), "torchvision:resnet18", "torchvision"),
        (("timm",), "timm:resnet10t", "timm"),
        (("torchvision",), "timm:resnet10t", "torchvision"),  # timm needs torchvision
    ],
)
def test_missing_package_says_how_to_install(monkeypatch, hidden, spec, missing):
    for name in ("torchvision", "timm"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # import/find_spec now see no package
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    message = _one_line(info)
    assert f"{missing} is not installed" in message
    assert "pip install 'ttmpd[zoo]'" in message


def test_spec_values_are_typed():
    parsed = parse_source_spec("timm:m?a=3,b=0.5,c=True,d=none,e=avg, f = -2 ")
    assert (parsed.source, parsed.name) == ("timm", "m")
    assert parsed.kwargs == {"a": 3, "b": 0.5, "c": True, "d": None, "e": "avg", "f": -2}
    assert type(parsed.kwargs["a"]) is int and type(parsed.kwargs["c"]) is bool


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("timm:m?a", "bad argument 'a'"),
        ("timm:m?a=", "bad argument 'a='"),
        ("timm:m?1x=2", "bad argument '1x=2'"),
        ("timm:m?a=1,a=2", "'a' is given twice"),
        ("timm:m?", "nothing after '?'"),
        ("torchvision:", "no model name"),
    ],
)
def test_malformed_spec_arguments(spec, words):
    with pytest.raises(ModelLoadError, match=words) as info:
        load_model(spec)
    _one_line(info)


# --- the nms operator (the stand-in on a CPU-only torch, else torchvision's own) ------------

# Boxes 10 high; x-ranges A=[0,10], B=[2,12], C=[5,15]. IoU(A,B)=8/12, IoU(B,C)=7/13 (both
# > 0.5), IoU(A,C)=5/15. Greedy by score: A kept, B suppressed by A, C kept (only the
# suppressed B overlapped it). Input order C, A, B: expected indices [1 (A), 0 (C)].
BOXES = torch.tensor([[5.0, 0, 15, 10], [0, 0, 10, 10], [2, 0, 12, 10]])
SCORES = torch.tensor([0.7, 0.9, 0.8])


def test_nms_hand_worked_example():
    tv = import_torchvision()
    assert torch.ops.torchvision.nms(BOXES, SCORES, 0.5).tolist() == [1, 0]
    assert tv.ops.nms(BOXES, SCORES, 0.5).tolist() == [1, 0]
    # A threshold above every IoU keeps all three, by descending score.
    assert tv.ops.nms(BOXES, SCORES, 0.7).tolist() == [1, 2, 0]
    # Different classes never suppress each other.
    assert tv.ops.batched_nms(BOXES, SCORES, torch.tensor([0, 0, 1]), 0.5).tolist() == [1, 2, 0]


def test_nms_threshold_is_strict_and_empty_input_works():
    # IoU of these two is exactly 8 / 16 = 0.5: not above 0.5, so both are kept.
    boxes, scores = torch.tensor([[0.0, 0, 4, 4], [0, 0, 4, 2]]), torch.tensor([0.9, 0.8])
    assert torch.ops.torchvision.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert torch.ops.torchvision.nms(boxes, scores, 0.49).tolist() == [0]
    empty = torch.ops.torchvision.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.long


def _naive_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def test_stand_in_kernel_agrees_with_a_naive_greedy_nms():
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 50
    boxes = torch.cat([corners, corners + 1 + torch.rand(200, 2, generator=gen) * 20], dim=1)
    scores = torch.rand(200, generator=gen, dtype=torch.float64)  # distinct: no ties
    for threshold in (0.1, 0.3, 0.7):
        expected = _naive_nms(boxes.tolist(), scores.tolist(), threshold)
        assert 0 < len(expected) < 200
        assert _nms_cpu(boxes, scores, threshold).tolist() == expected


# --- CLI and import time ----------------------------------------------------------------------


def test_cli_profiles_a_torchvision_model(tmp_path, capsys):
    from ttmpd.cli import main

    out = tmp_path / "lut.csv"
    options = "--backend fake --input-shape 1,3,32,32 --keep-fractions 0.5 --rounds 1"
    argv = ["profile", "--model", "torchvision:shufflenet_v2_x0_5", *options.split()]
    argv += ["--max-variants-per-unit", "1", "--out", str(out), "--json", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] > 0 and summary["uncovered"] == [] and out.is_file()


def test_cli_unknown_name_is_one_line_and_exit_2(tmp_path, capsys):
    from ttmpd.cli import main

    argv = ["profile", "--backend", "fake", "--model", "torchvision:shufflenet_v2_x0_05"]
    argv += ["--input-shape", "1,3,32,32", "--out", str(tmp_path / "lut.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown torchvision model 'shufflenet_v2_x0_05'" in err and "shufflenet_v2_x0_5" in err
    assert not (tmp_path / "lut.csv").exists()


def test_importing_ttmpd_imports_neither_package():
    code = (
        "import sys, ttmpd, ttmpd.models, ttmpd.cli; "
        "print(sorted(m for m in ('torchvision', 'timm') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
