"""The fetch policy: which URLs, hosts, addresses and ports web_fetch and the crawler may reach.

A URL is checked before DNS (scheme, credentials, host spelling, IP literals), and every address
its host resolves to is checked after; one non-public address refuses the whole host. The
operator's allow-list (CORRAL_WEBFETCH_ALLOW) opens named hosts, ``host:port`` pairs, IPs or CIDRs.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from corral_common.errors import BadRequest, Forbidden

from corral_websearch.net.addresses import IPAddress, looks_numeric, non_public_reason, parse_ip_literal

DEFAULT_PORTS = frozenset({80, 443})
ALLOW_HINT = "CORRAL_WEBFETCH_ALLOW can open specific internal hosts"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# A DNS label as resolvers take it: letters, digits, hyphens (not first or last) and, as real names have
# them, underscores; 1 to 63 characters. A whole name is at most 253 characters.
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_METADATA_NAMES = ("metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal")


class FetchRefused(Forbidden):
    """The policy refused a URL or an address: the message says which rule and why."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks that need no DNS."""

    url: str
    scheme: str
    host: str
    port: int
    literal: IPAddress | None = None
    raw: str = ""  # as the caller (or a Location header) spelled it, for messages

    @property
    def shown(self) -> str:
        return self.raw or self.url

    @property
    def origin(self) -> str:
        """``scheme://host:port`` (robots.txt and same-site checks)."""
        return f"{self.scheme}://{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def with_default_scheme(raw: str) -> str:
    """``ollama.com`` → ``https://ollama.com``, as Ollama's web_fetch docs show."""
    raw = raw.strip()
    return raw if _SCHEME.match(raw) else f"https://{raw}"


def normalize_host(host: str) -> str:
    """Lower-case, drop a trailing dot, IDNA-encode (UTS #46) a DNS name."""
    host = host.lower().rstrip(".")
    if not host or host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise BadRequest(f"invalid host name {host!r}: {exc}") from None


def _check_dns_name(raw: str, name: str) -> None:
    """400 for a host that no resolver could look up (empty or over-long labels, stray characters)."""
    if len(name) > 253:
        raise BadRequest(f"invalid URL {raw!r}: the host name is longer than 253 characters")
    bad = next((label for label in name.split(".") if not _LABEL.match(label)), None)
    if bad is not None:
        what = "an empty label" if not bad else f"the label {bad[:70]!r}"
        raise BadRequest(f"invalid URL {raw[:300]!r}: the host name has {what} (labels are 1-63 letters, digits "
                         "or hyphens, not starting or ending with a hyphen)")


@dataclass(frozen=True)
class _Entry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    host: str | None
    port: int | None

    def matches_port(self, port: int) -> bool:
        return self.port is None or self.port == port


def _split_port(entry: str) -> tuple[str, int | None]:
    """``[::1]:8080``, ``host:8080``, ``10.0.0.1:80`` → (host, port); a bare IPv6 keeps its colons."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _parse_entry(entry: str) -> _Entry:
    """One allow-list entry: a CIDR, an IP, a host, each optionally with ``:port``."""
    if "/" in entry:
        return _Entry(ipaddress.ip_network(entry, strict=False), None, None)
    host, port = _split_port(entry)
    literal = parse_ip_literal(host)
    if literal is not None:
        return _Entry(ipaddress.ip_network(literal), None, port)
    if not host or looks_numeric(host):
        raise ValueError(f"not a host, IP or CIDR: {entry!r}")
    return _Entry(None, normalize_host(host), port)


class AllowList:
    """CORRAL_WEBFETCH_ALLOW: comma-separated hosts, ``host:port`` pairs, IPs or CIDRs."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries: list[_Entry] = []
        self.invalid: list[str] = []
        for raw in entries:
            try:
                self.entries.append(_parse_entry(raw.strip()))
            except ValueError:
                self.invalid.append(raw)

    def allows_host(self, host: str, port: int) -> bool:
        """True when a host entry names this host (``*.example.com`` covers subdomains)."""
        for entry in self.entries:
            if entry.host is None or not entry.matches_port(port):
                continue
            if entry.host == host or (entry.host.startswith("*.") and host.endswith(entry.host[1:])):
                return True
        return False

    def allows_address(self, ip: IPAddress, port: int) -> bool:
        """True when an IP or CIDR entry contains this address."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(entry.network is not None and entry.matches_port(port) and ip.version == entry.network.version
                   and ip in entry.network for entry in self.entries)


class FetchPolicy:
    """The checks of security.md §4: every URL and every address passes here before a connection."""

    def __init__(self, allow: AllowList | None = None, ports: frozenset[int] = DEFAULT_PORTS) -> None:
        self.allow = allow or AllowList()
        self.ports = ports

    def check_url(self, raw: str) -> Target:
        """Parse and check a URL before DNS; raises BadRequest (malformed) or FetchRefused."""
        url = with_default_scheme(raw)
        if _FORBIDDEN_CHARS.search(url):
            raise BadRequest(f"invalid URL {raw!r}: spaces, control characters and backslashes are not allowed")
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadRequest(f"invalid URL {raw!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchRefused(f"refused to fetch {raw}: only http and https URLs can be fetched, not {scheme}:")
        if "@" in parts.netloc:
            raise FetchRefused(f"refused to fetch {raw}: URLs with a user name or password are not fetched")
        if not parts.hostname:
            raise BadRequest(f"invalid URL {raw!r}: no host")
        port = port or (443 if scheme == "https" else 80)
        # IDNA mapping first: full-width digits and dots can spell an IPv4 literal too.
        name = parts.hostname if ":" in parts.hostname else normalize_host(parts.hostname)
        literal = parse_ip_literal(name)
        if literal is None and looks_numeric(name):
            raise BadRequest(f"invalid URL {raw!r}: {parts.hostname} is not a valid IPv4 address")
        if literal is None:
            _check_dns_name(raw, name)
        host = str(literal) if literal is not None else name
        target = Target(_rebuild(scheme, host, parts), scheme, host, port, literal, url)
        if literal is not None:
            self.check_address(target, literal)
        elif not self.allow.allows_host(host, port):
            self._check_name(target)
        return target

    def _check_name(self, target: Target) -> None:
        """Names that are internal by definition are refused without asking DNS."""
        host = target.host
        if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
            raise FetchRefused(f"refused to fetch {target.shown}: {host} is a loopback name; {ALLOW_HINT}")
        if host in _METADATA_NAMES:
            raise FetchRefused(f"refused to fetch {target.shown}: {host} is a cloud metadata host; {ALLOW_HINT}")

    def check_addresses(self, target: Target, addresses: Iterable[IPAddress]) -> None:
        """Every address the host resolved to must be allowed; one bad answer refuses them all."""
        if target.literal is None and self.allow.allows_host(target.host, target.port):
            return
        addresses = [ip for ip in addresses if not self.allow.allows_address(ip, target.port)]
        for ip in addresses:
            self._check_public(target, ip)
        if addresses and target.port not in self.ports:
            raise self._port_refusal(target)

    def check_address(self, target: Target, ip: IPAddress) -> None:
        """One address: allow-listed, or public on an allowed port."""
        self.check_addresses(target, [ip])

    def _check_public(self, target: Target, ip: IPAddress) -> None:
        reason = non_public_reason(ip)
        if reason is not None:
            subject = f"{ip} is" if target.literal is not None else f"{target.host} resolves to {ip},"
            raise FetchRefused(f"refused to fetch {target.shown}: {subject} {reason}; {ALLOW_HINT}")

    def _port_refusal(self, target: Target) -> FetchRefused:
        ports = " and ".join(str(p) for p in sorted(self.ports))
        return FetchRefused(f"refused to fetch {target.shown}: port {target.port} is not allowed (only {ports}); "
                            f"{ALLOW_HINT} (host:port)")


def _rebuild(scheme: str, host: str, parts: urllib.parse.SplitResult) -> str:
    """The URL as it will be requested: canonical host, explicit non-default port, no fragment."""
    netloc = _bracket(host)
    if parts.port and parts.port != (443 if scheme == "https" else 80):
        netloc += f":{parts.port}"
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
