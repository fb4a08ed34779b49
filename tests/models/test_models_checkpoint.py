"""Checkpoints: round trips, format checks, atomic writes."""

import sys
import uuid

import pytest
import torch
from torch import nn

from ttmpd.errors import InputError, ModelLoadError
from ttmpd.models import (
    CHECKPOINT_FORMAT,
    SCHEMA_VERSION,
    Checkpoint,
    create_model,
    load_checkpoint,
    save_checkpoint,
)


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running stats, so a lost buffer would change the outputs."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _pruned_resnet20() -> nn.Module:
    """A resnet20 whose first stage is thinner (16 -> 8 channels inside block 0)."""
    model = create_model("resnet20", num_classes=5)
    block = model.layer1[0]
    block.conv1 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
    block.bn1 = nn.BatchNorm2d(8)
    block.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    return _randomise_bn(model)


def test_arch_round_trip_gives_identical_outputs(tmp_path):
    model = _randomise_bn(create_model("resnet20", in_channels=1, num_classes=4))
    path = save_checkpoint(
        tmp_path / "r20.pt",
        model,
        arch="resnet20",
        arch_kwargs={"in_channels": 1, "num_classes": 4},
        input_shape=(1, 28, 28),
        normalization=((0.1307,), (0.3081,)),
        metadata={"dataset": "mnist", "top1": 0.99, "tags": ["a", 1]},
    )
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.arch == "resnet20"
    assert loaded.arch_kwargs == {"in_channels": 1, "num_classes": 4}
    assert loaded.input_shape == (1, 28, 28)
    assert loaded.num_classes == 4
    assert loaded.normalization == ((0.1307,), (0.3081,))
    assert loaded.metadata == {"dataset": "mnist", "top1": 0.99, "tags": ["a", 1]}
    assert loaded.schema_version == SCHEMA_VERSION
    assert not loaded.model.training
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_arch_checkpoint_loads_without_pickled_code(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("resnet20"), arch="resnet20")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["kind"] == "arch"
    assert raw["num_classes"] == 10  # the zoo default, filled in


def test_full_module_round_trip_gives_identical_outputs(tmp_path):
    model = _pruned_resnet20()
    path = save_checkpoint(
        tmp_path / "pruned.pt",
        model,
        input_shape=[3, 32, 32],
        num_classes=5,
        normalization={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    )
    loaded = load_checkpoint(path)
    assert loaded.arch is None
    assert loaded.input_shape == (3, 32, 32)
    assert loaded.normalization == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert loaded.model.layer1[0].conv1.out_channels == 8
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_plain_torch_load_says_how_to_get_the_module(tmp_path):
    path = save_checkpoint(tmp_path / "pruned.pt", _pruned_resnet20(), num_classes=5)
    payload = torch.load(path, weights_only=True)  # what a user tries first
    assert "ttmpd.models.load_checkpoint(path).model" in payload["load_with"]
    assert isinstance(load_checkpoint(path).model, nn.Module)  # and the line is right


def test_torch_pruning_model_round_trip(tmp_path):
    tp = pytest.importorskip("torch_pruning")
    model = create_model("resnet20").eval()
    example = torch.randn(1, 3, 32, 32)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[model.fc],
    )
    pruner.step()
    assert model.layer3[0].conv1.out_channels < 64
    with pytest.raises(InputError, match="pass arch=None"):
        save_checkpoint(tmp_path / "bad.pt", model, arch="resnet20")
    loaded = load_checkpoint(save_checkpoint(tmp_path / "pruned.pt", model)).model
    with torch.no_grad():
        assert torch.equal(loaded(example), model(example))


def test_arch_mismatch_names_the_layer(tmp_path):
    with pytest.raises(InputError, match=r"layer1\.0\.conv1\.weight has shape") as info:
        save_checkpoint(tmp_path / "x.pt", _pruned_resnet20(), arch="resnet20")
    assert "arch=None" in str(info.value)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"arch": "resnet99"}, "unknown model 'resnet99'"),
        ({"input_shape": (3, 0, 32)}, "input_shape must hold positive ints"),
        ({"normalization": ((0.5,), (0.0,))}, "positive finite stds"),
        ({"normalization": ((0.5, 0.5), (0.2,))}, "same non-zero length"),
        ({"input_shape": (3, 32, 32), "normalization": ((0.5, 0.5), (1.0, 1.0))}, "per input"),
        ({"metadata": {"t": torch.zeros(1)}}, r"metadata\['t'\] is a Tensor"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
    ],
)
def test_bad_save_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        save_checkpoint(tmp_path / "x.pt", create_model("resnet20"), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unpicklable_model_is_refused(tmp_path):
    model = create_model("resnet20")
    model.hook = lambda x: x
    with pytest.raises(InputError, match="cannot pickle the model"):
        save_checkpoint(tmp_path / "x.pt", model)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, create_model("resnet20"), arch="resnet20", metadata={"v": 1})
    real_save = torch.save

    def half_write(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, create_model("resnet20"), arch="resnet20", metadata={"v": 2})
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "new.pt", create_model("resnet20"), arch="resnet20")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert load_checkpoint(path).metadata == {"v": 1}


def _assert_load_error(path, *fragments):
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tmp_path):
    _assert_load_error(tmp_path / "nope.pt", "not found", "nope.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("resnet20"), arch="resnet20")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_load_error(path, "truncated or corrupted", "re-save")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    _assert_load_error(path, "cannot be read as a torch file")


def test_plain_torch_save_of_a_module(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(nn.Linear(2, 2), path)
    _assert_load_error(path, "not a ttmpd checkpoint", "weights_only=False", "save_checkpoint")


def test_other_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "someone.else", "schema_version": 1}, path)
    _assert_load_error(path, "not a ttmpd checkpoint", "ttmpd.checkpoint")


def test_wrong_schema_version(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("resnet20"), arch="resnet20")
    payload = torch.load(path, weights_only=True)
    payload["schema_version"] = 99
    torch.save(payload, path)
    _assert_load_error(path, "schema_version 99", f"reads version {SCHEMA_VERSION}")


def test_damaged_state_dict(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("resnet20"), arch="resnet20")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["fc.weight"]
    torch.save(payload, path)
    _assert_load_error(path, "corrupted ttmpd checkpoint", "fc.weight")


def test_unknown_arch(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("resnet20"), arch="resnet20")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet1001"
    torch.save(payload, path)
    _assert_load_error(path, "needs zoo model 'resnet1001'", "resnet20")


def test_module_whose_code_is_gone(tmp_path, monkeypatch):
    name = f"ttmpd_test_net_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    path = save_checkpoint(tmp_path / "net.pt", module.Net())
    monkeypatch.delitem(sys.modules, name)
    (tmp_path / f"{name}.py").unlink()
    _assert_load_error(path, "cannot rebuild the module", name, "importable")


def test_a_folder_loads_the_checkpoint_ttmpd_wrote_into_it(tmp_path):
    from ttmpd.models.checkpoint import FOLDER_CHECKPOINTS

    torch.manual_seed(0)
    pruned, tuned = create_model("resnet20"), create_model("resnet20")
    save_checkpoint(tmp_path / "run" / "prune" / "model.pt", pruned, arch="resnet20")
    assert torch.equal(load_checkpoint(tmp_path / "run").model.conv1.weight, pruned.conv1.weight)
    save_checkpoint(tmp_path / "run" / "distill" / "student.pt", tuned, arch="resnet20")
    # the fine-tuned model wins over the pruned one
    assert torch.equal(load_checkpoint(tmp_path / "run").model.conv1.weight, tuned.conv1.weight)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=f"looked for {', '.join(FOLDER_CHECKPOINTS)}"):
        load_checkpoint(tmp_path / "empty")
