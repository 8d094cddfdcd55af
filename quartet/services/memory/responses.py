"""Stored responses of the gateway's Responses API: opaque JSON records keyed by response id.

Memory keeps them durably and hands them back; what is inside (the response
and the conversation it answered) is the gateway's business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from quartet.services.common.errors import InvalidArgument, require
from quartet.services.memory.limits import Limits, check_id


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    response_id: str
    previous_response_id: str
    body_json: str
    created_at: float = 0.0


def check_record(record: ResponseRecord, limits: Limits) -> None:
    check_id(record.response_id, "response_id", required=True)
    check_id(record.previous_response_id, "previous_response_id", required=False)
    size = len(record.body_json.encode("utf-8"))
    require(
        size <= limits.max_response_bytes,
        f"body_json is {size} bytes; the limit is {limits.max_response_bytes}",
        field="body_json",
    )
    try:
        body = json.loads(record.body_json)
    except ValueError:
        raise InvalidArgument("body_json is not valid JSON", field="body_json") from None
    require(isinstance(body, dict), "body_json must be a JSON object", field="body_json")
