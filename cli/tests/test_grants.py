"""``corral grants add|list|revoke`` as a user sees them (against a fake gateway)."""

from __future__ import annotations

import httpx
import pytest

from corral_cli.client import Client
from corral_cli.main import main


@pytest.fixture
def keyed(server):
    """A CLI client that carries an API key, as OLLAMA_API_KEY makes it."""
    return Client("http://corral.test:11434", headers={"Authorization": "Bearer olk_test"},
                  transport=httpx.MockTransport(server.handle))


def test_grants_add_sends_the_repository_user_and_actions(server, keyed, capsys):
    server.on("POST", "/api/grants", httpx.Response(200, json={"id": 7, "repository": "alice/m", "user": "bob",
                                                               "actions": ["pull", "push"]}))

    assert main(["grants", "add", "alice/m", "bob", "--action", "pull", "--action", "push"], client=keyed) == 0

    assert capsys.readouterr().out == "Granted pull,push on alice/m to bob (grant 7)\n"
    assert [r.json() for r in server.sent("POST", "/api/grants")] == [
        {"repository": "alice/m", "user": "bob", "actions": ["pull", "push"]}]


def test_grants_add_shows_the_servers_refusal(server, keyed, capsys):
    message = "forbidden: only the repository's owner or an admin manages its grants"
    server.on("POST", "/api/grants", server.error(403, message))

    assert main(["grants", "add", "bob/m", "carol"], client=keyed) == 1

    assert capsys.readouterr().err == f"Error: {message}\n"
    assert [r.json() for r in server.sent("POST", "/api/grants")] == [{"repository": "bob/m", "user": "carol"}]


def test_grants_list_and_revoke(server, keyed, capsys):
    server.on("GET", "/api/grants", httpx.Response(200, json={"grants": [
        {"id": 3, "repository": "alice/m", "user": "bob", "actions": ["pull"]}]}))
    server.on("DELETE", "/api/grants/3", httpx.Response(200))

    assert main(["grants", "list"], client=keyed) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "REPOSITORY", "USER", "ACTIONS"] and lines[1].split() == [
        "3", "alice/m", "bob", "pull"]
    assert main(["grants", "revoke", "3"], client=keyed) == 0
    assert capsys.readouterr().out == "Revoked grant 3\n"
