"""``load_model(spec)``: one string names a model, whatever its source.

Accepted specs:

* ``resnet18`` -- a zoo name (:func:`ttmpd.models.list_models`);
* ``torchvision:resnet50``, ``timm:vit_tiny_patch16_224?img_size=28,in_chans=1``,
  ``hf:bert?num_hidden_layers=2`` -- a torchvision, timm or transformers model by name,
  built without weights, ``KEY=VALUE`` arguments after ``?`` (:mod:`ttmpd.models._sources`);
  these prefixes are never read as module names;
* ``path/to/file.py:factory`` -- a Python file imported by path, then ``factory(**kwargs)``;
* ``package.module:factory`` -- an importable module, then ``factory(**kwargs)``;
* ``path/to/model.pt`` (or ``.pth``) -- a checkpoint written by ``save_checkpoint``.

Every failure raises :class:`~ttmpd.errors.ModelLoadError` with one line naming the problem
and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from .._registry import UnknownNameError
from ..errors import InputError, ModelLoadError, one_line
from ._sources import PACKAGES, load_source_model, prepare_import, source_of
from ._zoo import create_model, list_models
from .checkpoint import CHECKPOINT_SUFFIXES, load_checkpoint

#: ``file.py:factory`` files are imported as ``<prefix><sha1 of the resolved path>``.
FACTORY_MODULE_PREFIX = "_ttmpd_factory_"
_SPEC_FORMS = (
    "a zoo name, torchvision:NAME, timm:NAME, hf:NAME, path/to/file.py:factory, "
    "package.module:factory or a .pt/.pth checkpoint"
)


def _import_file(path_text: str, spec: str) -> ModuleType:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"factory file {path} not found (in spec {spec!r}); check the path")
    return import_factory_file(path, spec)


def import_factory_file(path: Path, spec: str = "") -> ModuleType:
    """Import a Python file by path, once per (file, modification time), under
    :data:`FACTORY_MODULE_PREFIX` + the first 12 hex digits of the SHA-1 of its resolved
    path, so the same file always gets the same module name (pickled classes find it)."""
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"{FACTORY_MODULE_PREFIX}{digest}"
    mtime = resolved.stat().st_mtime_ns
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__ttmpd_mtime__", None) == mtime:
        return cached
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ModelLoadError(f"{path} is not a Python file (in spec {spec!r}); give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    module.__ttmpd_mtime__ = mtime
    sys.modules[name] = module  # classes defined there must be findable for pickling
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(
            f"importing {path} failed with {one_line(exc)}; fix that file"
            + (f" (in spec {spec!r})" if spec else "")
        ) from None
    return module


def _import_module(name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise ModelLoadError(
                f"module {name!r} (in spec {spec!r}) is not importable; install it or add its "
                "directory to PYTHONPATH (or use path/to/file.py:factory)"
            ) from None
        raise ModelLoadError(
            f"importing module {name!r} failed with {one_line(exc)}; install the missing dependency"
        ) from None
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(
            f"importing module {name!r} failed with {one_line(exc)}; fix that module"
        ) from None


def _get_factory(module: ModuleType, attr: str, where: str, spec: str) -> Callable[..., Any]:
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            callables = sorted(
                n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            )
            shown = ", ".join(callables[:12]) or "(none)"
            raise ModelLoadError(
                f"{where} has no factory {attr!r} (in spec {spec!r}); callables there: {shown}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(
            f"{attr!r} in {where} is a {type(target).__name__}, not callable; name a function "
            "or class that returns an nn.Module"
        )
    return target


def _call_factory(factory: Callable[..., Any], spec: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"factory {spec!r} raised {one_line(exc)}; fix the factory or the arguments passed "
            "to it"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; make "
            "it return the model"
        )
    return model


def _from_factory(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelLoadError(f"malformed model spec {spec!r}; give {_SPEC_FORMS}")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if is_file:
        module, where = _import_file(target, spec), target
    else:
        package = target.partition(".")[0]
        if package in PACKAGES:  # e.g. torchvision.models:resnet50 on a CPU-only torch
            prepare_import(package)
        module, where = _import_module(target, spec), f"module {target!r}"
    return _call_factory(_get_factory(module, attr, where, spec), spec, kwargs)


def _from_zoo(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    if spec.endswith(".py"):
        raise ModelLoadError(f"{spec!r} names a file but no factory; write {spec}:factory_name")
    if Path(spec).is_file():
        raise ModelLoadError(
            f"{spec!r} is a file but not a .pt/.pth checkpoint; give {_SPEC_FORMS}"
        )
    try:
        return create_model(spec, **kwargs)
    except UnknownNameError:
        raise ModelLoadError(
            f"unknown zoo model {spec!r}; choose one of: {', '.join(list_models())} "
            "(or give torchvision:NAME, timm:NAME, hf:NAME, path/to/file.py:factory, "
            "package.module:factory or a .pt/.pth checkpoint)"
        ) from None
    except InputError as exc:
        raise ModelLoadError(f"cannot build zoo model {spec!r}: {exc}") from None


def load_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build or load the model named by ``spec`` (see the module docstring for the forms).

    ``kwargs`` go to the zoo factory (``in_channels``, ``num_classes``, ...), to the
    torchvision builder or ``timm.create_model`` (beside those after ``?``), or to the user
    factory; a checkpoint takes none (its architecture is stored in it) and is returned in
    eval mode. Raises :class:`~ttmpd.errors.ModelLoadError` with a one-line fix on failure.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"empty model spec {spec!r}; give {_SPEC_FORMS}")
    spec = spec.strip()
    if source_of(spec) is not None:
        return load_source_model(spec, **kwargs)
    if spec.lower().endswith(CHECKPOINT_SUFFIXES):
        if kwargs:
            raise ModelLoadError(
                f"checkpoint {spec} stores its architecture; drop the arguments "
                f"{', '.join(sorted(kwargs))}"
            )
        return load_checkpoint(spec).model
    if ":" in spec:
        return _from_factory(spec, kwargs)
    return _from_zoo(spec, kwargs)
