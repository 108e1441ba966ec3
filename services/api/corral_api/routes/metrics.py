"""GET /metrics on the gateway: its own families merged with every running service's (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from corral_common.metrics import CONTENT_TYPE

from corral_api.metrics import merged_exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(await merged_exposition(state.metrics, state.scrape_targets), media_type=CONTENT_TYPE)
