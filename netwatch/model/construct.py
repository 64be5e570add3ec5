"""Building frozen model values fast: one `__init__` that stores through the slots.

A frozen dataclass's generated `__init__` stores each field with `object.__setattr__` (a
global lookup and a call through the frozen class's attribute machinery per field): 2.3 us
for a `Flow` of 25 fields, 1.5 us for a `SocketEntry`, 1.2 for a `PacketMeta`. The live
daemon makes about 400 flows and 400 socket entries a tick with 100 active connections, and
capture one `PacketMeta` per packet, so construction was about a tenth of a tick.
`slotted_init` replaces that `__init__` with one of the same signature that stores each
field through its slot's descriptor (a C call): 1.4 us for a `Flow`, 0.95 for a
`SocketEntry`, 0.6 for a `PacketMeta` (`bench/construct.py`).

Nothing else changes: the same parameters in the same order with the same defaults, the
class's `__post_init__` runs last, and the instance is as frozen as before (`__setattr__`
still raises; the descriptors are what `object.__setattr__` reaches too). The dataclass's
own `__init__` is kept as `dataclass_init(cls)` so tests compare the two.

This is the one place the speed trick lives; a class opts in with the decorator, placed
above `@dataclass(frozen=True, slots=True)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

_C = TypeVar("_C", bound=type)

_ORIGINAL = "_dataclass_init"


def slotted_init(cls: _C) -> _C:
    """Give a frozen, slotted dataclass an `__init__` that stores through its slots.

    Raises TypeError at import for a class it cannot serve the same way (not a slotted
    dataclass, or a field with a default factory or keyword-only), so a model change that
    breaks the assumption fails loudly instead of building different values."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: slotted_init needs a dataclass with slots=True")
    namespace: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []
    for i, f in enumerate(dataclasses.fields(cls)):
        if not f.init:
            continue  # set by __post_init__, as in the dataclass's own __init__
        if f.default_factory is not dataclasses.MISSING or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: slotted_init takes plain fields only")
        if f.default is not dataclasses.MISSING:
            namespace[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        else:
            params.append(f.name)
        namespace[f"_s{i}"] = cls.__dict__[f.name].__set__
        body.append(f"    _s{i}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # noqa: S102  # built from the class's own field names only
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    original = cls.__dict__["__init__"]  # the dataclass's, on this very class
    init.__doc__ = original.__doc__
    setattr(cls, _ORIGINAL, original)
    setattr(cls, "__init__", init)  # noqa: B010  # assigning the method is the point
    return cls


def dataclass_init(cls: type) -> Callable[..., None]:
    """The `__init__` `dataclasses` generated for a class `slotted_init` served (tests)."""
    original: Callable[..., None] = getattr(cls, _ORIGINAL)
    return original


def served(cls: type) -> bool:
    """Whether `slotted_init` gave this class its `__init__`."""
    return _ORIGINAL in cls.__dict__
