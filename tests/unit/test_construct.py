"""`model.construct.slotted_init`: the stored-through-slots `__init__` builds exactly what the
dataclass's own `__init__` builds, with the same signature, and leaves values frozen."""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netwatch.model as model
from netwatch.model import EnrichedFlow, Flow, FlowKey, Transport
from netwatch.model.construct import dataclass_init, served, slotted_init

SERVED = sorted(
    (c for c in vars(model).values() if isinstance(c, type) and served(c)),
    key=lambda c: c.__name__,
)

# Fields whose value the class's __post_init__ reads: these need real values.
_IP = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.ip_addresses(v=4).map(lambda a: ipaddress.ip_address(f"::ffff:{a}")),  # unmapped
)
_ENDPOINT = st.builds(model.Endpoint, _IP, st.integers(0, 65535))
_KEY = st.builds(FlowKey, st.sampled_from(list(Transport)), _ENDPOINT, st.none() | _ENDPOINT)
_FLOW = st.builds(Flow, _KEY, st.sampled_from(list(model.Direction)), serial=st.integers(0, 9))
_ANY = st.one_of(st.none(), st.integers(), st.text(max_size=4), st.booleans(), st.floats())
_REAL = {
    ("Endpoint", "ip"): _IP,
    ("Endpoint", "port"): st.integers(0, 65535),
    ("FlowKey", "transport"): st.sampled_from(list(Transport)),
    ("FlowKey", "local"): _ENDPOINT,
    ("FlowKey", "remote"): st.none() | _ENDPOINT,
    ("EnrichedFlow", "flow"): _FLOW,
    ("EnrichedFlow", "rev_remote"): st.integers(0, 9),
}


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _slots(obj: object) -> list[object]:
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]  # type: ignore[arg-type]


def test_the_hot_model_values_are_served() -> None:
    names = {c.__name__ for c in SERVED}
    assert {"Flow", "SocketEntry", "EnrichedFlow", "PacketMeta", "FlowKey", "Endpoint"} <= names


@pytest.mark.parametrize("cls", SERVED, ids=lambda c: c.__name__)
def test_same_signature_as_the_dataclass_init(cls: type) -> None:
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(dataclass_init(cls)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


@st.composite
def _call(draw: st.DrawFn, cls: type) -> tuple[list[object], dict[str, object]]:
    """Arguments for `cls`: every required field, some optional ones; positional for a
    prefix, keywords for the rest."""
    fields = _init_fields(cls)
    values = {}
    for f in fields:
        required = f.default is dataclasses.MISSING
        if required or draw(st.booleans()):
            values[f.name] = draw(_REAL.get((cls.__name__, f.name), _ANY))
    names = [f.name for f in fields]
    prefix = 0
    while prefix < len(names) and names[prefix] in values:
        prefix += 1
    cut = draw(st.integers(0, prefix))
    args = [values.pop(n) for n in names[:cut]]
    return args, values


@pytest.mark.parametrize("cls", SERVED, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_builds_what_the_dataclass_init_builds(cls: type, data: st.DataObject) -> None:
    args, kwargs = data.draw(_call(cls))
    ours = cls(*args, **kwargs)
    theirs = cls.__new__(cls)
    dataclass_init(cls)(theirs, *args, **kwargs)
    assert all(a is b or a == b for a, b in zip(_slots(ours), _slots(theirs), strict=True))
    assert ours == theirs
    first = _init_fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(ours, first, None)


@pytest.mark.parametrize("cls", SERVED, ids=lambda c: c.__name__)
def test_bad_calls_fail_as_the_dataclass_init_fails(cls: type) -> None:
    with pytest.raises(TypeError):
        cls()  # every served class has a required field
    with pytest.raises(TypeError):
        cls(*range(len(_init_fields(cls)) + 1))
    required = [f.name for f in _init_fields(cls) if f.default is dataclasses.MISSING]
    with pytest.raises(TypeError):
        cls(**dict.fromkeys(required), no_such_field=1)


def test_post_init_runs_last() -> None:
    ep = model.Endpoint(ipaddress.ip_address("::ffff:192.0.2.7"), 443)
    assert ep.ip == ipaddress.ip_address("192.0.2.7")  # unmapped by __post_init__
    assert hash(ep) == hash(model.Endpoint(ipaddress.ip_address("192.0.2.7"), 443))
    flow = Flow(FlowKey(Transport.TCP, ep, None), model.Direction.OUTBOUND, serial=4)
    assert EnrichedFlow(flow, None, 2).version == (4, 0, 0, 2)


def test_refuses_classes_it_cannot_serve_alike() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (NoSlots, Factory, KeywordOnly):
        with pytest.raises(TypeError):
            slotted_init(cls)
