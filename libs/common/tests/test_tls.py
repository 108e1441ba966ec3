"""One TLS context per process, verifying as httpx's default does."""

from __future__ import annotations

import ssl

from corral_common.tls import tls_context


def test_every_client_shares_one_verifying_context() -> None:
    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # certifi's CA store is loaded
