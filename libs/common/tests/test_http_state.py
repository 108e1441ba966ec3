"""``from_state``: a dependency reads what lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from corral_common.http import from_state

Store = Annotated[str, Depends(from_state("store"))]


def test_from_state_reads_the_named_attribute() -> None:
    app = FastAPI()
    app.state.store, app.state.other = "the store", "other"

    @app.get("/")
    async def read(store: Store) -> dict[str, str]:
        return {"store": store}

    assert TestClient(app).get("/").json() == {"store": "the store"}
