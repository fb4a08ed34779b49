"""load_model: every spec form, and one clear ModelLoadError per failure."""

import textwrap
import uuid

import pytest
import torch
from torch import nn

from ttmpd.errors import ModelLoadError
from ttmpd.models import load_model, save_checkpoint

FACTORY_SOURCE = textwrap.dedent(
    """
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, width=4, num_classes=3):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))

    def build(width=4, num_classes=3):
        return Tiny(width, num_classes)

    def explode():
        raise ValueError("width must be even\\nsecond line")

    def not_a_model():
        return 42

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY_SOURCE)
    return path


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """An importable module (unique name, so no clash with other tests) on sys.path."""
    name = f"ttmpd_test_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_zoo_name_with_kwargs():
    model = load_model("resnet20", in_channels=1, num_classes=4).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_file_factory(factory_file):
    model = load_model(f"{factory_file}:build", num_classes=5)
    assert isinstance(model, nn.Module)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_file_factory_is_imported_once(factory_file):
    first = load_model(f"{factory_file}:build")
    second = load_model(f"{factory_file}:build")
    assert type(first) is type(second)


def test_module_factory(factory_module):
    model = load_model(f"{factory_module}:build", width=6)
    assert model.conv.out_channels == 6


def test_module_factory_can_be_a_class(factory_module):
    assert type(load_model(f"{factory_module}:Tiny")).__name__ == "Tiny"


def test_checkpoint(tmp_path):
    model = load_model("resnet20").eval()
    path = save_checkpoint(tmp_path / "r20.pt", model, arch="resnet20")
    loaded = load_model(str(path))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


def test_unknown_zoo_name_lists_choices():
    with pytest.raises(ModelLoadError) as info:
        load_model("resnet99")
    message = _one_line(info)
    assert "unknown zoo model 'resnet99'" in message
    assert "resnet18" in message and "mobilenet_v2" in message


def test_bad_zoo_kwargs():
    with pytest.raises(ModelLoadError, match="valid keyword arguments") as info:
        load_model("resnet18", depth=3)
    _one_line(info)


def test_missing_factory_file(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{tmp_path / 'nope.py'}:build")
    message = _one_line(info)
    assert "not found" in message and "nope.py" in message


def test_py_file_without_factory(factory_file):
    with pytest.raises(ModelLoadError, match=r"no factory; write .*:factory_name") as info:
        load_model(str(factory_file))
    _one_line(info)


def test_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\ndef build(:\n")
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{path}:build")
    message = _one_line(info)
    assert "importing" in message and "SyntaxError" in message and "fix that file" in message


def test_module_not_importable():
    with pytest.raises(ModelLoadError) as info:
        load_model("no_such_package_xyz.models:build")
    message = _one_line(info)
    assert "'no_such_package_xyz.models'" in message and "PYTHONPATH" in message


def test_module_with_missing_dependency(tmp_path, monkeypatch):
    name = f"ttmpd_test_dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"not_installed_dep_xyz.*missing dependency") as info:
        load_model(f"{name}:build")
    _one_line(info)


def test_missing_factory_lists_callables(factory_module):
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{factory_module}:buidl")
    message = _one_line(info)
    assert "no factory 'buidl'" in message and "build" in message and "Tiny" in message


def test_factory_not_callable(factory_file):
    with pytest.raises(ModelLoadError, match=r"'NOT_CALLABLE'.*not callable") as info:
        load_model(f"{factory_file}:NOT_CALLABLE")
    _one_line(info)


def test_factory_raises(factory_file):
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{factory_file}:explode")
    message = _one_line(info)
    assert "raised ValueError: width must be even" in message
    assert "second line" not in message


def test_factory_bad_kwargs(factory_module):
    with pytest.raises(ModelLoadError, match=r"raised TypeError.*unexpected keyword") as info:
        load_model(f"{factory_module}:build", depth=3)
    _one_line(info)


def test_factory_returns_non_module(factory_file):
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{factory_file}:not_a_model")
    message = _one_line(info)
    assert "returned a int, not a torch.nn.Module" in message


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="not found") as info:
        load_model(str(tmp_path / "missing.pt"))
    _one_line(info)


def test_checkpoint_rejects_kwargs(tmp_path):
    path = save_checkpoint(tmp_path / "m.pth", load_model("resnet20"), arch="resnet20")
    with pytest.raises(ModelLoadError, match="drop the arguments num_classes"):
        load_model(str(path), num_classes=3)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save(load_model("resnet20").state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"not a ttmpd checkpoint.*bare state_dict") as info:
        load_model(str(path))
    _one_line(info)


@pytest.mark.parametrize("spec", ["", "   ", ":build", "module:"])
def test_malformed_specs(spec):
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    _one_line(info)
