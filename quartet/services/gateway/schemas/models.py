"""The Models resource: ``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    #: Unix seconds; the engine has no creation date, so this is when the gateway first saw the model.
    created: int
    owned_by: str = "quartet"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
