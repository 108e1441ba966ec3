"""Through a proxy the registry's name is the proxy's to resolve; addresses written in the URL are still checked."""

from __future__ import annotations

import pytest

from corral_common.errors import BadGateway, Forbidden
from corral_registry.transfer.remote import HostPolicy


def test_a_name_only_the_proxy_can_resolve_is_left_to_it() -> None:
    policy = HostPolicy()
    policy.check("https://registry.invalid:4443/v2/", resolve=False)
    with pytest.raises(BadGateway, match="cannot resolve registry host registry.invalid: .*set HTTPS_PROXY"):
        policy.check("https://registry.invalid:4443/v2/")


@pytest.mark.parametrize("url", ["https://10.0.0.5/v2/", "https://169.254.169.254/v2/", "https://[fd00::1]/v2/"])
def test_private_addresses_are_refused_with_or_without_a_proxy(url: str) -> None:
    for resolve in (True, False):
        with pytest.raises(Forbidden, match="non-public address"):
            HostPolicy().check(url, resolve=resolve)
