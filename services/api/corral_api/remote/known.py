"""A local model the remote-model check resolved already, handed to the route so the store is asked once."""

from __future__ import annotations

from typing import Any

from corral_common.internal import ResolvedModel
from corral_common.logs import note_request


RESOLVED = "resolved_model"  # request state: (name, ResolvedModel) of a local model this middleware looked up


class KnownModel:
    """A registry client that answers ``resolve`` of the one model this request resolved already (while looking
    for a remote model), so a local request asks the store once; everything else goes to the wrapped client."""

    def __init__(self, inner: Any, name: str, model: ResolvedModel) -> None:
        self._inner, self._name, self._model = inner, name, model

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)

    async def resolve(self, name: str, request_id: str) -> ResolvedModel:
        """The known model for its name (as the client wrote it), else the store's answer."""
        if name != self._name:
            return await self._inner.resolve(name, request_id)
        note_request(model=name)
        return self._model
