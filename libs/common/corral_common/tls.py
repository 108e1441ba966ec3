"""The one TLS context of a process, for every outgoing HTTPS client it makes."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """certifi's CA store, as httpx builds it for ``verify=True`` with ``trust_env=False``, built once per process:
    each context holds its own parsed copy of the store (~0.8 MiB), and ``corral serve`` builds this one before it
    forks its services, so that they share it."""
    return httpx.create_ssl_context(trust_env=False)
