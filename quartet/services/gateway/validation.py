"""Request bodies: raw bytes to a validated model, or one OpenAI-shaped 400 naming the field.

Pydantic reports a failed union once per member, with the member's type
("str", "list[ContentPart]") in the location. OpenAI clients expect a
``param`` such as ``messages[0].content``, so those tags are removed, and of
the members' complaints the one that got furthest into the value is kept.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from quartet.services.gateway.errors import BadRequest

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(raw: bytes, model: type[ModelT]) -> ModelT:
    """Validate a JSON body; raise BadRequest with ``param`` set on any problem."""
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise describe(error.errors(include_url=False), model) from None


@cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every field name in the model tree: location parts that are not union tags."""
    names: set[str] = set()
    pending: list[object] = [model]
    seen: set[object] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            for name, info in current.model_fields.items():
                names.add(info.alias or name)
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(current))
    return frozenset(names)


def _path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _clean(loc: tuple[str | int, ...], names: frozenset[str], keep_last: bool) -> tuple[list[str | int], int | None]:
    """The location without union tags, and where the first tag was (None if none)."""
    parts: list[str | int] = []
    union_at: int | None = None
    for index, part in enumerate(loc):
        is_last = index == len(loc) - 1
        if isinstance(part, int) or part in names or (keep_last and is_last):
            parts.append(part)
        elif union_at is None:
            union_at = len(parts)
    return parts, union_at


def describe(errors: list[dict], model: type[BaseModel]) -> BadRequest:
    """The one error to report for a failed validation."""
    names = _field_names(model)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return BadRequest(f"could not parse the JSON body: {reason}", code="invalid_json")
    if first["type"] == "model_type" and not first["loc"]:
        return BadRequest("the request body must be a JSON object", code="invalid_json")

    cleaned = [(_clean(e["loc"], names, e["type"] == "extra_forbidden"), e) for e in errors]
    # Group the complaints of one union (same location up to the tag); keep the deepest.
    (parts, union_at), error = cleaned[0]
    if union_at is not None:
        prefix = parts[:union_at]
        group = [(p, e) for (p, u), e in cleaned if u == union_at and p[:union_at] == prefix]
        deepest = max(len(p) for p, _ in group)
        group = [(p, e) for p, e in group if len(p) == deepest]
        parts, error = group[0]
        if len(group) > 1 and deepest == union_at:
            messages = dict.fromkeys(e["msg"] for _, e in group)
            error = {**error, "msg": ", or ".join(messages)}
    return _to_bad_request(parts, error)


def _to_bad_request(parts: list[str | int], error: dict) -> BadRequest:
    kind = error["type"]
    param = _path(parts) or None
    if kind == "missing":
        return BadRequest(f"missing required parameter: '{param}'", field=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        where = f" in '{_path(parts[:-1])}'" if len(parts) > 1 else ""
        return BadRequest(
            f"unrecognized request argument supplied: '{parts[-1]}'{where}", field=param, code="unknown_parameter"
        )
    if kind in ("unsupported_parameter", "invalid_value"):
        # Our own checks: their message is already a full sentence.
        return BadRequest(f"{param}: {error['msg']}" if param else error["msg"], field=param, code=kind)
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    got = type(error.get("input")).__name__ if code == "invalid_type" else None
    detail = f"{error['msg']}" + (f", got {_json_type(got)}" if got else "")
    return BadRequest(f"invalid value for '{param}': {detail}", field=param, code=code)


def _json_type(python_type: str | None) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "list": "an array",
        "dict": "an object",
        "NoneType": "null",
    }.get(python_type or "", python_type or "")
