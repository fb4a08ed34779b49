"""The zoo: every model builds, runs and has the published parameter count."""

import re

import pytest
import torch
from torch import nn

from ttmpd._registry import UnknownNameError
from ttmpd.errors import InputError
from ttmpd.models import create_model, list_models, model_info

CNNS = ("mobilenet_v2", "resnet18", "resnet20", "resnet34", "resnet50", "resnet56", "vgg11_bn")
ZOO = (*CNNS, "vit_mnist")
DEFAULT_CLASSES = {name: 1000 for name in CNNS} | {"resnet20": 10, "resnet56": 10, "vit_mnist": 10}


def test_list_models_is_the_sorted_zoo():
    assert list_models() == sorted(ZOO)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", CNNS)
def test_forward_shape_on_32x32(name, in_channels):
    model = create_model(name, in_channels=in_channels, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_default_num_classes(name):
    model = create_model(name)
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear.out_features == DEFAULT_CLASSES[name]
    assert model_info(name).default_num_classes == DEFAULT_CLASSES[name]


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "vgg11_bn", "vit_mnist"])
def test_runs_on_28x28(name):
    model = create_model(name, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, DEFAULT_CLASSES[name])


def test_resnet18_on_224x224():
    model = create_model("resnet18", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 5)


@pytest.mark.parametrize(
    ("name", "published_m"),
    [
        ("resnet18", 11.69),
        ("resnet34", 21.80),
        ("resnet50", 25.56),
        ("mobilenet_v2", 3.50),
        ("resnet20", 0.27),
        ("resnet56", 0.85),
    ],
)
def test_parameter_counts_match_the_papers(name, published_m):
    info = model_info(name)
    assert info.params_m == pytest.approx(published_m, rel=0.01)
    real = sum(p.numel() for p in create_model(name).parameters())
    assert info.num_params == real  # the meta-device count is the real count


def test_vgg_pool_size_7_is_the_paper_classifier():
    assert model_info("vgg11_bn").params_m == pytest.approx(32.21, rel=0.01)
    with torch.device("meta"):
        paper = create_model("vgg11_bn", pool_size=7)
    assert sum(p.numel() for p in paper.parameters()) / 1e6 == pytest.approx(132.87, rel=0.01)


def test_mobilenet_width_mult_shrinks_the_model():
    with torch.device("meta"):
        half = create_model("mobilenet_v2", width_mult=0.5)
    assert 1.5e6 < sum(p.numel() for p in half.parameters()) < 2.5e6  # published 1.97M


def test_residual_blocks_have_projection_shortcuts():
    model = create_model("resnet20")
    shortcuts = [m for name, m in model.named_modules() if name.endswith("downsample")]
    assert len(shortcuts) == 2  # entering layer2 and layer3 (option B)
    assert all(isinstance(s[0], nn.Conv2d) and s[0].kernel_size == (1, 1) for s in shortcuts)


def test_convolutions_are_kaiming_initialised():
    conv = create_model("resnet56").layer3[0].conv2
    expected_std = (2.0 / (conv.out_channels * 9)) ** 0.5  # fan_out, ReLU gain
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)


def test_parameter_counts_in_summary_lines_are_the_models_own():
    # ``ttmpd models`` prints the real count next to each factory's summary line: a count
    # stated in the line must agree with it to the printed precision
    checked = []
    for name in list_models():
        info = model_info(name)
        for stated in re.findall(r"(\d+\.\d+)M params", info.summary):
            assert stated == f"{info.params_m:.2f}", (name, info.summary)
            checked.append(name)
    assert checked  # the pattern still finds the counts


def test_unknown_name_lists_choices():
    with pytest.raises(UnknownNameError, match="resnet18") as info:
        create_model("resnet1")
    assert "resnet1" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"in_channels": 0}, "in_channels must be a positive integer"),
        ({"num_classes": -1}, "num_classes must be a positive integer"),
        ({"depth": 3}, "valid keyword arguments: in_channels, num_classes"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        create_model("resnet20", **kwargs)


def test_bad_width_mult_is_named():
    with pytest.raises(InputError, match="width_mult must be > 0"):
        create_model("mobilenet_v2", width_mult=0)
