"""Loopback checks: one rule for a listen host, a client address and a base URL."""

from __future__ import annotations

import pytest

from corral_common.net import (env_proxies, ip_or_none, is_loopback_address, is_loopback_host, is_loopback_url,
                               proxy_for)


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.2", False), ("example.com", False), ("", False),
])
def test_listen_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize("host, expected", [("0.0.0.0", True), ("::", True), ("10.0.0.1", False)])
def test_listen_host_counting_unspecified(host: str, expected: bool) -> None:
    assert is_loopback_host(host, unspecified=True) is expected


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", True), ("::1", True), ("203.0.113.9", False), ("localhost", False), ("", False),
])
def test_client_address(address: str, expected: bool) -> None:
    assert is_loopback_address(address) is expected


def test_a_peer_without_an_ip_can_count_as_local() -> None:
    assert is_loopback_address("", non_ip=True) is True
    assert is_loopback_address("10.1.2.3", non_ip=True) is False


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:11434", True), ("http://localhost:11434", True), ("http://LOCALHOST", True),
    ("http://[::1]:11434", True), ("http://0.0.0.0:11434", True), ("http://[::]:11434", True),
    ("https://ollama.example.com", False), ("http://192.168.0.5:11434", False), ("", False),
])
def test_base_url(url: str, expected: bool) -> None:
    assert is_loopback_url(url) is expected


def test_ip_or_none() -> None:
    assert str(ip_or_none("::1")) == "::1"
    assert ip_or_none("host.local") is None


PROXIES = {"https": "http://proxy:3128", "http": "http://plain:8080", "no": "example.com,.corp,10.0.0.1"}


@pytest.mark.parametrize("url, expected", [
    ("https://registry.ollama.ai/v2/", "http://proxy:3128"), ("http://registry.invalid:80/v2/", "http://plain:8080"),
    ("https://example.com:443/v2/", None), ("https://a.example.com/v2/", None), ("https://x.corp/v2/", None),
    ("https://10.0.0.1/v2/", None), ("https://localhost:5000/v2/", None), ("https://127.0.0.1/v2/", None),
    ("https://[::1]:5000/v2/", None),
])
def test_proxy_for_follows_the_scheme_no_proxy_and_never_loopback(url: str, expected: str | None) -> None:
    assert proxy_for(url, PROXIES) == expected


def test_env_proxies_reads_either_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert proxy_for("https://registry.ollama.ai/", env_proxies()) == "http://proxy:3128"
    assert proxy_for("http://registry.ollama.ai/", env_proxies()) is None
