"""One generic registry for backends, losses, accuracy proxies and search strategies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from .errors import InputError

T = TypeVar("T")


class UnknownNameError(InputError, KeyError):
    """An unknown registry name; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> object mapping with a decorator to fill it.

    ``register`` works bare (``@reg.register``, the object's ``name`` attribute or
    ``__name__`` is used) or with a name (``@reg.register("kd")``) and returns the object
    unchanged. Registering a name twice raises ``ValueError``; looking up an unknown name
    raises :class:`UnknownNameError` listing the valid choices.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @overload
    def register(self, obj: T, /) -> T: ...
    @overload
    def register(self, name: str, /) -> Callable[[T], T]: ...

    def register(self, obj_or_name, /):
        if isinstance(obj_or_name, str):
            name = obj_or_name

            def decorator(obj: T) -> T:
                self._add(name, obj)
                return obj

            return decorator
        obj = obj_or_name
        name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
        if not isinstance(name, str):
            raise ValueError(f"cannot infer a {self.kind} name for {obj!r}; pass one")
        self._add(name, obj)
        return obj

    def _add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {choices}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
