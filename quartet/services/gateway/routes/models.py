"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models the engine serves."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from quartet.services.gateway.limits import guard
from quartet.services.gateway.schemas.models import ModelCard, ModelList
from quartet.services.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["models"], dependencies=[Depends(guard)])


@router.get("/v1/models")
async def list_models(state: GatewayState = Depends(gateway_state)) -> ModelList:
    return ModelList(data=await state.catalog.list(fresh=True))


# Model ids hold a slash (HuggingFaceTB/SmolLM2-135M-Instruct), hence the path converter.
@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: GatewayState = Depends(gateway_state)) -> ModelCard:
    return await state.catalog.get(model_id, fresh=True)
