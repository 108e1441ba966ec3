"""End-to-end fixtures: a real ``corral serve`` with smollm2:135m imported through ``corral create``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverproc import Server, start_server, stop_server


LOG_TAIL_CHARS = 20_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test that used a corral serve gets the tail of that server's log in its report: pytest keeps only
    its last few temporary folders, so a failure seen in CI is otherwise left without the server's side."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, Server) and value.log.exists():
            text = value.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            report.sections.append((f"corral serve log of fixture '{name}' (last {LOG_TAIL_CHARS} chars)", text))


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
