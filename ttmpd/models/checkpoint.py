"""ttmpd checkpoints: a model plus what is needed to run it (input shape, normalisation).

A checkpoint is one ``torch.save`` file holding a dict::

    format          "ttmpd.checkpoint"
    schema_version  1
    kind            "arch"   -> arch (zoo name), arch_kwargs (dict), state_dict
                    "module" -> module: bytes, the whole ``torch.save``-pickled nn.Module
    input_shape     [C, H, W, ...] per sample (no batch dimension) or None
    num_classes     int or None
    normalization   {"mean": [...], "std": [...]} or None
    metadata        dict of plain values (str, int, float, bool, None, lists, dicts)
    ttmpd_version, torch_version   strings, informative only

Zoo models are stored by architecture and state_dict, which :func:`load_checkpoint` reads
with ``torch.load(weights_only=True)``: no code runs. Models that no zoo architecture can
rebuild (e.g. a pruned network whose channel counts changed) are stored whole: the module
is pickled into a ``bytes`` entry, so the outer dict still loads with ``weights_only=True``
and is validated first; only then is the inner pickle loaded with ``weights_only=False``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_path
from .._version import __version__
from ..errors import InputError, ModelLoadError, one_line
from ._zoo import MODELS, create_model, default_num_classes

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ttmpd.checkpoint"
SCHEMA_VERSION = 1

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` made of exact builtin types (weights_only-safe), or InputError.

    Subclasses such as ``numpy.float64`` or ``torch.TorchVersion`` are converted to their
    builtin base, since ``torch.load(weights_only=True)`` refuses them.
    """
    if value is None or type(value) is bool:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind) and not isinstance(value, bool):
            return kind(value)
    if isinstance(value, list | tuple):
        items = [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where} has a non-string key {key!r}; use string keys")
            plain[str(key)] = _plain(item, f"{where}[{key!r}]")
        return plain
    raise InputError(
        f"{where} is a {type(value).__name__}; checkpoints store only str, int, float, bool, "
        "None, lists and dicts there"
    )


def _as_shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise InputError(
            f"input_shape must be a sequence of positive ints like (3, 32, 32), got {value!r}"
        )
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value):
        raise InputError(f"input_shape must hold positive ints like (3, 32, 32), got {value!r}")
    return tuple(value)


def _as_normalization(value: Any) -> Normalization | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        if set(value) != {"mean", "std"}:
            raise InputError(
                f"normalization needs exactly the keys 'mean' and 'std', got {sorted(value)}"
            )
        value = (value["mean"], value["std"])
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise InputError("normalization must be a (mean, std) pair or {'mean': ..., 'std': ...}")
    try:
        mean, std = (tuple(float(v) for v in part) for part in value)
    except (TypeError, ValueError):
        raise InputError(
            f"normalization mean/std must be sequences of numbers, got {value!r}"
        ) from None
    if not mean or len(mean) != len(std):
        raise InputError(
            "normalization mean and std need the same non-zero length, got "
            f"{len(mean)} and {len(std)}"
        )
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(s) and s > 0 for s in std):
        raise InputError(
            f"normalization needs finite means and positive finite stds, got {value!r}"
        )
    return mean, std


@dataclass(frozen=True)
class Checkpoint:
    """A loaded (or to-be-saved) checkpoint. Fields are validated and normalised on creation.

    ``arch`` is the zoo name when the model is stored by architecture, else None;
    ``input_shape`` is per sample, without the batch dimension; ``normalization`` is a
    ``(mean, std)`` pair of per-channel tuples.
    """

    model: nn.Module
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    normalization: Normalization | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        if self.arch is not None and not isinstance(self.arch, str):
            raise InputError(f"arch must be a zoo model name or None, got {self.arch!r}")
        if not isinstance(self.arch_kwargs, dict) or not isinstance(self.metadata, dict):
            raise InputError("arch_kwargs and metadata must be dicts")
        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InputError(f"num_classes must be a positive int or None, got {n!r}")
        shape = _as_shape(self.input_shape)
        norm = _as_normalization(self.normalization)
        if shape is not None and norm is not None and len(norm[0]) not in (1, shape[0]):
            raise InputError(
                f"normalization has {len(norm[0])} channels but input_shape {shape} has "
                f"{shape[0]}; give one mean/std per input channel"
            )
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "normalization", norm)
        object.__setattr__(self, "arch_kwargs", _plain(self.arch_kwargs, "arch_kwargs"))
        object.__setattr__(self, "metadata", _plain(self.metadata, "metadata"))


def _state_mismatch(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """Describe the first difference between two state_dicts' keys or shapes, or None."""
    missing = [key for key in expected if key not in actual]
    if missing:
        return f"missing {', '.join(missing[:3])}"
    unexpected = [key for key in actual if key not in expected]
    if unexpected:
        return f"unexpected {', '.join(unexpected[:3])}"
    for key, tensor in expected.items():
        value = actual[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{key} has shape {shape}, expected {tuple(tensor.shape)}"
    return None


def _check_matches_arch(model: nn.Module, arch: str, arch_kwargs: dict[str, Any]) -> None:
    with torch.device("meta"):
        reference = create_model(arch, **arch_kwargs).state_dict()
    problem = _state_mismatch(reference, model.state_dict())
    if problem is not None:
        raise InputError(
            f"the model does not match zoo model {arch!r} ({problem}; a pruned model?); "
            "pass arch=None to store the whole module"
        )


def _module_bytes(model: nn.Module) -> bytes:
    if type(model).__module__ == "__main__":
        logger.warning(
            "%s is defined in __main__; the checkpoint will only load where that class "
            "can be imported under the same name",
            type(model).__name__,
        )
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise InputError(
            f"cannot pickle the model ({one_line(exc)}); remove lambdas, local classes and "
            "hooks from it, or save a zoo model with arch=..."
        ) from None
    return buffer.getvalue()


def _factory_files(model: nn.Module) -> dict[str, str]:
    """``{module name: file}`` of the ``file.py:factory`` files whose classes ``model`` uses:
    :func:`~ttmpd.models.load_model` imports such a file under a name derived from its path,
    which nothing else can import, so loading re-imports the file under that name."""
    import sys

    from .loading import FACTORY_MODULE_PREFIX

    files = {}
    for module in model.modules():
        name = type(module).__module__
        source = sys.modules.get(name)
        if name.startswith(FACTORY_MODULE_PREFIX) and getattr(source, "__file__", None):
            files[name] = str(source.__file__)
    return files


def _import_factory_files(path: Path, files: Any) -> None:
    from .loading import import_factory_file

    if not isinstance(files, dict):
        return
    for name, file in files.items():
        if not Path(file).is_file():
            raise ModelLoadError(
                f"{path} holds classes defined in {file}, which is gone; put that file back "
                "(the module is rebuilt from it)"
            )
        if import_factory_file(Path(file)).__name__ != name:
            raise _corrupted(path, f"factory file {file} maps to another module name")


#: What a plain ``torch.load`` of a checkpoint shows its reader: the dict holds no module.
LOAD_WITH = (
    "a ttmpd checkpoint: ttmpd.models.load_checkpoint(path).model is the module "
    "(model.pt2 beside it loads without ttmpd: torch.export.load(path).module())"
)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    normalization: Normalization | Mapping[str, Sequence[float]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its run information to ``path`` atomically; return the path.

    With ``arch`` (a zoo name), the model's state_dict must fit
    ``create_model(arch, **arch_kwargs)`` and only the weights are stored; otherwise the whole
    module is pickled (needed for pruned models; its classes must be importable where it is
    loaded). ``num_classes`` defaults to ``arch_kwargs["num_classes"]`` or the zoo default.
    Bad arguments raise :class:`~ttmpd.errors.InputError`; an unwritable path raises
    :class:`~ttmpd.errors.OutputError`, and a failed write leaves ``path`` untouched.
    """
    kwargs = dict(arch_kwargs or {})
    if arch is not None and num_classes is None and arch in MODELS:
        num_classes = kwargs.get("num_classes", default_num_classes(arch))
    record = Checkpoint(
        model=model,
        arch=arch,
        arch_kwargs=kwargs,
        input_shape=input_shape,
        num_classes=num_classes,
        normalization=normalization,
        metadata=dict(metadata or {}),
    )
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "load_with": LOAD_WITH,
        "arch": arch,
        "arch_kwargs": record.arch_kwargs,
        "input_shape": list(record.input_shape) if record.input_shape else None,
        "num_classes": record.num_classes,
        "normalization": None,
        "metadata": record.metadata,
        "ttmpd_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if record.normalization is not None:
        mean, std = record.normalization
        payload["normalization"] = {"mean": list(mean), "std": list(std)}
    if arch is not None:
        _check_matches_arch(model, arch, record.arch_kwargs)
        payload["kind"] = "arch"
        payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    else:
        payload["kind"] = "module"
        payload["module"] = _module_bytes(model)
        payload["factory_files"] = _factory_files(model)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


#: File suffixes read as checkpoints wherever a model spec is accepted.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _looks_like_a_model_spec(text: str) -> bool:
    """A zoo name, ``source:NAME`` or ``module:factory`` rather than a file path."""
    if text.lower().endswith(CHECKPOINT_SUFFIXES) or Path(text).exists():
        return False
    head, colon, _tail = text.partition(":")
    return text in MODELS or (bool(colon) and len(head) > 1)  # not a Windows drive letter


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        if _looks_like_a_model_spec(str(path)):
            raise ModelLoadError(
                f"this command needs a ttmpd checkpoint, and {str(path)!r} is a model spec; "
                f"make one with: ttmpd models save --model {path} --input-shape 1,C,H,W "
                "--out base.pt"
            )
        raise ModelLoadError(f"checkpoint {path} not found; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{path} is not a ttmpd checkpoint: it holds pickled Python objects (a "
            "torch.save(model) file?); if you trust it, torch.load it with weights_only=False "
            "and re-save the model with ttmpd.models.save_checkpoint"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError, ... on bad files
        raise ModelLoadError(
            f"{path} cannot be read as a torch file (truncated or corrupted: {one_line(exc)}); "
            "re-save it with ttmpd.models.save_checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if (
            isinstance(payload, dict)
            and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())
        ):
            hint = " (it looks like a bare state_dict: build the model and load_state_dict it)"
        raise ModelLoadError(
            f"{path} is not a ttmpd checkpoint (no format {CHECKPOINT_FORMAT!r}){hint}; "
            "save models with ttmpd.models.save_checkpoint"
        )
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelLoadError(
            f"{path} has checkpoint schema_version {version!r} but this ttmpd reads version "
            f"{SCHEMA_VERSION}; use the ttmpd version that wrote it or re-save the model"
        )
    return payload


def _corrupted(path: Path, problem: str) -> ModelLoadError:
    return ModelLoadError(f"{path} is a corrupted ttmpd checkpoint ({problem}); re-save the model")


def _rebuild_arch(path: Path, payload: dict[str, Any]) -> nn.Module:
    arch, kwargs, state = payload.get("arch"), payload.get("arch_kwargs"), payload.get("state_dict")
    if not isinstance(arch, str) or not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise _corrupted(path, "missing arch, arch_kwargs or state_dict")
    if arch not in MODELS:
        raise ModelLoadError(
            f"{path} needs zoo model {arch!r}, which this ttmpd lacks; choose a ttmpd that "
            f"has it (available: {', '.join(MODELS.names())})"
        )
    try:
        model = create_model(arch, **kwargs)
    except InputError as exc:
        raise _corrupted(path, one_line(exc)) from None
    problem = _state_mismatch(model.state_dict(), state)
    if problem is not None:
        raise _corrupted(path, f"its state_dict does not fit {arch!r}: {problem}")
    model.load_state_dict(state)
    return model


def _rebuild_module(path: Path, payload: dict[str, Any]) -> nn.Module:
    blob = payload.get("module")
    if not isinstance(blob, bytes):
        raise _corrupted(path, "missing the pickled module")
    _import_factory_files(path, payload.get("factory_files"))
    try:
        model = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot rebuild the module stored in {path} ({one_line(exc)}); make the code "
            "that defines its classes importable (install it or add it to sys.path)"
        ) from None
    except Exception as exc:  # unpickling can fail in many ways on damaged bytes
        raise _corrupted(path, one_line(exc)) from None
    if not isinstance(model, nn.Module):
        raise _corrupted(path, f"the stored object is a {type(model).__name__}, not an nn.Module")
    return model


#: Where a folder written by ttmpd keeps its model, in the order :func:`load_checkpoint`
#: looks: distill output, run output (fine-tuned), prune output, run output (pruned only).
FOLDER_CHECKPOINTS = ("student.pt", "distill/student.pt", "model.pt", "prune/model.pt")


def checkpoint_in(path: Path) -> Path:
    """``path`` itself, or for a folder the first of :data:`FOLDER_CHECKPOINTS` inside it."""
    if not path.is_dir():
        return path
    for name in FOLDER_CHECKPOINTS:
        if (path / name).is_file():
            return path / name
    raise ModelLoadError(
        f"folder {path} holds no ttmpd checkpoint (looked for {', '.join(FOLDER_CHECKPOINTS)}); "
        "pass the .pt file"
    )


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; the model is in eval mode on CPU.

    Security: the file is first read with ``torch.load(weights_only=True)``, which runs no
    code. Architecture checkpoints (zoo models) never go further. Whole-module checkpoints
    then unpickle their module with ``weights_only=False``, which can execute arbitrary code
    from a malicious file: only load whole-module checkpoints you trust.

    ``path`` may also be a folder ttmpd wrote: the first of :data:`FOLDER_CHECKPOINTS` in it
    (``ttmpd distill`` and ``ttmpd run`` write the fine-tuned model, ``ttmpd prune`` the
    pruned one).

    Every failure (missing, truncated or foreign file, other schema version, unknown
    architecture, unimportable classes) raises :class:`~ttmpd.errors.ModelLoadError`.
    """
    path = checkpoint_in(Path(path))
    payload = _read_payload(path)
    kind = payload.get("kind")
    if kind == "arch":
        model = _rebuild_arch(path, payload)
    elif kind == "module":
        model = _rebuild_module(path, payload)
    else:
        raise _corrupted(path, f"unknown kind {kind!r}, expected 'arch' or 'module'")
    model.eval()
    try:
        return Checkpoint(
            model=model,
            arch=payload.get("arch") if kind == "arch" else None,
            arch_kwargs=payload.get("arch_kwargs") or {},
            input_shape=payload.get("input_shape"),
            num_classes=payload.get("num_classes"),
            normalization=payload.get("normalization"),
            metadata=payload.get("metadata") or {},
            schema_version=payload["schema_version"],
        )
    except InputError as exc:
        raise _corrupted(path, str(exc)) from None
