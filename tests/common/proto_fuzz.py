"""Hypothesis strategies for any protobuf request message, built from its descriptor.

Every field gets values from across its wire type's whole range (uint32 up to 2**32-1, int64
both ends, floats with NaN and infinities, any unicode), oneofs pick one member, repeated fields
a few items, nested messages a few levels deep. Used to fuzz the engine's and memory's gRPC
servers with what a hostile or buggy client could send: they must answer a typed status,
never INTERNAL/UNKNOWN, never hang, never die.
"""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

_T = FieldDescriptor
_INTS = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1), _T.TYPE_SINT32: (-(2**31), 2**31 - 1), _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1), _T.TYPE_SINT64: (-(2**63), 2**63 - 1), _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1), _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1), _T.TYPE_FIXED64: (0, 2**64 - 1),
}

#: Statuses a server may answer a bad request with; INTERNAL and UNKNOWN mean a bug.
TYPED_STATUSES = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.ALREADY_EXISTS,
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    if field.type in _INTS:
        low, high = _INTS[field.type]
        # Edges and small values are where bugs live; the whole range is there too.
        return st.one_of(st.sampled_from([low, high, 0, 1, -1 if low < 0 else 2]), st.integers(0, 64), st.integers(low, high))
    if field.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == _T.TYPE_FLOAT else 64)
    if field.type == _T.TYPE_BOOL:
        return st.booleans()
    if field.type == _T.TYPE_STRING:
        return st.text(max_size=40)
    if field.type == _T.TYPE_BYTES:
        return st.binary(max_size=40)
    if field.type == _T.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.sampled_from(numbers) | st.integers(-3, max(numbers) + 3)  # unknown numbers too (open enums)
    raise TypeError(field.type)


def _value(field: FieldDescriptor, depth: int, overrides: dict) -> st.SearchStrategy:
    if field.type == _T.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            return st.dictionaries(_scalar(key), _value(value, depth - 1, overrides), max_size=3)
        return _fields(field.message_type, depth - 1, overrides)
    return _scalar(field)


def _fields(descriptor: Descriptor, depth: int, overrides: dict) -> st.SearchStrategy[dict]:
    if depth <= 0:
        return st.just({})
    strategies: dict[str, st.SearchStrategy] = {}
    for field in descriptor.fields:
        key = f"{descriptor.full_name}.{field.name}"
        if key in overrides:
            strategies[field.name] = overrides[key]
            continue
        one = _value(field, depth, overrides)
        is_map = field.type == _T.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        repeated = field.is_repeated and not is_map
        strategies[field.name] = st.lists(one, max_size=3) if repeated else one
    oneofs = {field.name: oneof.name for oneof in descriptor.oneofs for field in oneof.fields}
    names = sorted(strategies)

    def build(chosen: list[str]) -> st.SearchStrategy[dict]:
        taken: set[str] = set()
        keep = []
        for name in chosen:  # at most one member per oneof
            group = oneofs.get(name)
            if group is None or group not in taken:
                keep.append(name)
                taken.add(group) if group else None
        return st.fixed_dictionaries({name: strategies[name] for name in keep})

    return st.lists(st.sampled_from(names), max_size=len(names), unique=True).flatmap(build) if names else st.just({})


def _fill(message: Message, values: dict) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.type == _T.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_field.type == _T.TYPE_MESSAGE:
                    _fill(target[k], v)
                else:
                    target[k] = v
        elif field.type == _T.TYPE_MESSAGE:
            if field.is_repeated:
                for item in value:
                    _fill(target.add(), item)
            else:
                target.SetInParent()
                _fill(target, value)
        elif field.is_repeated:
            target.extend(value)
        else:
            setattr(message, name, value)


def messages(cls: type[Message], *, depth: int = 4, overrides: dict | None = None) -> st.SearchStrategy[Message]:
    """Messages of ``cls``; ``overrides`` maps ``package.Message.field`` to a strategy for it."""

    def make(values: dict) -> Message:
        message = cls()
        _fill(message, values)
        return message

    return _fields(cls.DESCRIPTOR, depth, overrides or {}).map(make)
