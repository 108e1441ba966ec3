"""Dependencies of the /v2 routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_common.http import from_state

from corral_registry.v2.names import Repo, parse_repo
from corral_registry.v2.service import Registry
from corral_registry.v2.tokenauth import CATALOG, Needed, TokenRelay, authorize, needed_for


async def _repo(namespace: str, model: str, request: Request) -> Repo:
    """The repository of the path, parsed once; with token auth on, the token must grant the method's action."""
    repo = parse_repo(namespace, model, request.app.state.registry.layout_host)
    await authorize(request, needed_for(request.method, repo))
    return repo


async def _catalog(request: Request) -> None:
    await authorize(request, Needed(*CATALOG))


async def _base(request: Request) -> None:
    await authorize(request, None)


RegistryDep = Annotated[Registry, Depends(from_state("registry"))]
RepoDep = Annotated[Repo, Depends(_repo)]
BaseAccess = Annotated[None, Depends(_base)]
CatalogAccess = Annotated[None, Depends(_catalog)]
RelayDep = Annotated[TokenRelay, Depends(from_state("token_relay"))]
