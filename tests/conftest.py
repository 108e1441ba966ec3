"""End-to-end fixtures: a real ``corral serve`` with smollm2:135m imported through ``corral create``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverproc import Server, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One corral for the session, with smollm2:135m imported through ``corral create``."""
    tmp = tmp_path_factory.mktemp("corral")
    srv = start_server(tmp)
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=("smollm2:135m",))
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture
def client(server: Server):
    """The official ollama Python client pointed at the session server."""
    import ollama

    return ollama.Client(host=server.url)
