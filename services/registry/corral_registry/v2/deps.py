"""Dependencies of the /v2 routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_registry.v2.names import Repo, parse_repo
from corral_registry.v2.service import Registry
from corral_registry.v2.tokenauth import CATALOG, Needed, TokenRelay, authorize, needed_for


def _registry(request: Request) -> Registry:
    return request.app.state.registry


async def _repo(namespace: str, model: str, request: Request) -> Repo:
    """The repository of the path, parsed once; with token auth on, the token must grant the method's action."""
    repo = parse_repo(namespace, model, request.app.state.registry.layout_host)
    await authorize(request, needed_for(request.method, repo))
    return repo


async def _catalog(request: Request) -> None:
    await authorize(request, Needed(*CATALOG))


async def _base(request: Request) -> None:
    await authorize(request, None)


def _relay(request: Request) -> TokenRelay:
    return request.app.state.token_relay


RegistryDep = Annotated[Registry, Depends(_registry)]
RepoDep = Annotated[Repo, Depends(_repo)]
BaseAccess = Annotated[None, Depends(_base)]
CatalogAccess = Annotated[None, Depends(_catalog)]
RelayDep = Annotated[TokenRelay, Depends(_relay)]
