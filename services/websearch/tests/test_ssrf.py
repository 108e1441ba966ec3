"""security.md §4 SSRF-1..4: every address form, redirects, DNS rebinding and mixed answers."""

from __future__ import annotations

import asyncio

import pytest

from corral_common.errors import BadRequest
from corral_websearch.net.policy import FetchRefused
from corral_websearch.testing import GuardedBackend, Site, StubResolver, free_port_on_both, make_fetcher, send


def _refusal(url: str, resolver: StubResolver | None = None, allow: tuple[str, ...] = ()) -> FetchRefused:
    with pytest.raises(FetchRefused) as caught:
        asyncio.run(make_fetcher(allow, resolver).fetch(url))
    assert caught.value.status == 403
    return caught.value


@pytest.mark.parametrize(("template", "why"), [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/", "localhost is a loopback name"),
    ("http://LOCALHOST.:{port}/", "localhost is a loopback name"),
    ("http://api.localhost:{port}/", "loopback name"),
    ("http://[::1]:{port}/", "::1 is a loopback address"),
    ("http://0.0.0.0:{port}/", "unspecified"),
    ("http://[::]:{port}/", "unspecified"),
    ("http://2130706433:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0x7f000001:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0177.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0177.0.0.01:{port}/", "127.0.0.1 is a loopback address"),
    ("http://127.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://127.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/", "IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://[::ffff:7f00:1]:{port}/", "IPv4-mapped form of 127.0.0.1"),
    ("http://[64:ff9b::7f00:1]:{port}/", "NAT64 form of 127.0.0.1"),
    ("http://[2002:7f00:1::1]:{port}/", "6to4 form of 127.0.0.1"),
    ("http://[::127.0.0.1]:{port}/", "IPv4-compatible"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
    ("http://0xa9fea9fe/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://012.0.0.1/", "10.0.0.1 is a private address"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.100.100.200/", "cloud metadata"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://user@127.0.0.1:{port}/", "user name or password"),
    ("http://user:pass@example.com/", "user name or password"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:{port}/_GET%20/", "only http and https"),
    ("ftp://127.0.0.1:{port}/", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
])
def test_ssrf1_direct_targets_are_refused_before_any_connection(canary: Site, template: str, why: str) -> None:
    error = _refusal(template.format(port=canary.port))
    assert why in error.message
    assert "CORRAL_WEBFETCH_ALLOW" in error.message or "http and https" in error.message \
        or "user name" in error.message
    assert canary.connections == 0 and GuardedBackend.dialled == []


@pytest.mark.parametrize("url", ["http://08.1.1.1/", "http://1.2.3.4.5/", "http://[::zz]/", "http://a b/", "http://x\\y/",
                                 "http://", "http://a..b/", "http://.../", "http://%zz/", "http://-a.com/",
                                 "http://a-.com/", "http://" + "a" * 64 + ".com/", "http://" + "abc." * 64 + "com/",
                                 "http://exa!mple.com/"])
def test_malformed_urls_are_bad_requests(url: str) -> None:
    with pytest.raises(BadRequest):
        asyncio.run(make_fetcher().fetch(url))


def test_names_resolving_to_internal_addresses_are_refused(canary: Site) -> None:
    resolver = StubResolver({"internal.test": [["10.1.2.3"]], "loop.test": [["127.0.0.1"]],
                             "meta.test": [["169.254.169.254"]], "v6.test": [["::1"]]})
    for host, why in (("internal.test", "10.1.2.3, a private address"), ("loop.test", "127.0.0.1, a loopback"),
                      ("meta.test", "cloud metadata"), ("v6.test", "::1, a loopback")):
        error = _refusal(f"http://{host}:{canary.port}/", resolver)
        assert f"{host} resolves to" in error.message and why in error.message
    assert canary.connections == 0


def test_ssrf4_one_internal_answer_refuses_the_host(canary: Site) -> None:
    resolver = StubResolver({"mixed.test": [["93.184.216.34", "127.0.0.1"]]})
    error = _refusal(f"http://mixed.test:{canary.port}/", resolver)
    assert "127.0.0.1, a loopback address" in error.message
    assert canary.connections == 0 and GuardedBackend.dialled == []


def test_public_addresses_on_other_ports_are_refused() -> None:
    resolver = StubResolver({"public.test": [["93.184.216.34"]]})
    error = _refusal("http://public.test:8080/", resolver)
    assert "port 8080 is not allowed" in error.message
    assert GuardedBackend.dialled == []


def _public_site(routes: dict) -> Site:
    """127.0.0.2 plays a public server: the tests allow-list it, as security.md's test override does."""
    return Site("127.0.0.2", free_port_on_both(), routes)


def test_ssrf2_redirect_to_loopback_is_blocked_at_the_second_hop(canary: Site) -> None:
    public = _public_site({"/go": lambda h: send(h, "", 302, headers=[("Location", canary.url("/"))])})
    try:
        resolver = StubResolver({"public.test": [["127.0.0.2"]]})
        error = _refusal(f"http://public.test:{public.port}/go", resolver, allow=("127.0.0.2",))
        assert f"refused to fetch {canary.url('/')}" in error.message and "loopback" in error.message
        assert public.hits == ["/go"] and canary.connections == 0
    finally:
        public.close()


def test_redirects_to_internal_names_and_schemes_are_blocked(canary: Site) -> None:
    public = _public_site({
        "/to-name": lambda h: send(h, "", 301, headers=[("Location", "http://internal.test/admin")]),
        "/to-file": lambda h: send(h, "", 307, headers=[("Location", "file:///etc/passwd")]),
        "/to-localhost": lambda h: send(h, "", 308, headers=[("Location", f"//localhost:{canary.port}/")]),
    })
    try:
        resolver = StubResolver({"public.test": [["127.0.0.2"]], "internal.test": [["192.168.0.10"]]})
        base = f"http://public.test:{public.port}"
        assert "private address" in _refusal(f"{base}/to-name", resolver, ("127.0.0.2",)).message
        assert "only http and https" in _refusal(f"{base}/to-file", resolver, ("127.0.0.2",)).message
        assert "loopback name" in _refusal(f"{base}/to-localhost", resolver, ("127.0.0.2",)).message
        assert canary.connections == 0
    finally:
        public.close()


def test_ssrf3_dns_rebinding_connects_to_the_checked_address_only() -> None:
    port = free_port_on_both()
    canary = Site("127.0.0.1", port, {"/": lambda h: send(h, "<title>internal</title>secret")})
    public = Site("127.0.0.2", port, {"/": lambda h: send(h, "<title>public</title>hello")})
    try:
        # First answer is "public" (allow-listed 127.0.0.2), every later one is loopback (TTL 0).
        resolver = StubResolver({"rebind.test": [["127.0.0.2"], ["127.0.0.1"]]})
        fetched = asyncio.run(make_fetcher(("127.0.0.2",), resolver).fetch(f"http://rebind.test:{port}/"))
        assert b"public" in fetched.body
        assert resolver.calls == ["rebind.test"]
        assert GuardedBackend.dialled == [f"127.0.0.2:{port}"]
        assert canary.connections == 0
    finally:
        canary.close()
        public.close()


def test_host_header_keeps_the_name() -> None:
    seen: list[str] = []

    def page(handler) -> None:  # type: ignore[no-untyped-def]
        seen.append(handler.headers["Host"])
        send(handler, "ok", content_type="text/plain")

    public = _public_site({"/": page})
    try:
        resolver = StubResolver({"www.public.test": [["127.0.0.2"]]})
        asyncio.run(make_fetcher(("127.0.0.2",), resolver).fetch(f"http://www.public.test:{public.port}/"))
        assert seen == [f"www.public.test:{public.port}"]
    finally:
        public.close()


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "127.0.0.1:{port}", "localhost", "localhost:{port}"])
def test_the_allow_list_opens_internal_hosts(site: Site, entry: str) -> None:
    site.routes["/"] = lambda h: send(h, "hello", content_type="text/plain")
    resolver = StubResolver({"localhost": [["127.0.0.1"]]})
    host = "localhost" if entry.startswith("localhost") else "127.0.0.1"
    fetched = asyncio.run(make_fetcher((entry.format(port=site.port),), resolver).fetch(site.url("/", host)))
    assert fetched.body == b"hello"


def test_an_allowed_port_does_not_open_other_ports(site: Site, canary: Site) -> None:
    error = _refusal(canary.url("/"), allow=(f"127.0.0.1:{site.port}",))
    assert "loopback" in error.message and canary.connections == 0


def test_hosts_are_idna_normalised_before_any_check(canary: Site) -> None:
    from corral_websearch.net.policy import FetchPolicy

    policy = FetchPolicy()
    assert policy.check_url("http://ExAmple.COM./a b".replace(" ", "%20")).host == "example.com"
    assert policy.check_url("http://bücher.example/").url == "http://xn--bcher-kva.example/"
    assert policy.check_url("example.org").url == "https://example.org/"
    error = _refusal(f"http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{canary.port}/")  # full-width
    assert "127.0.0.1 is a loopback address" in error.message
    assert canary.connections == 0
