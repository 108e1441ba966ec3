"""Print the ``--secret`` flags that hand this machine's pip index settings and CA bundle to ``docker build``.

A machine whose HTTPS goes through an inspecting proxy, or whose pip reads a private index, builds images
only when pip inside the build knows the same: the CA bundle pip trusts here and the index/proxy settings
of its configuration (``pip config list``: /etc/pip.conf, /etc/xdg/pip, ~/.config/pip and PIP_* variables).
They travel as BuildKit secrets, mounted only into the RUNs that call pip, so no layer and no image history
keeps them. Settings that name paths of this machine (constraints, find-links, file: indexes) are left out. Prints nothing
where there is nothing to hand over, so a plain machine builds with the public defaults.

    infra/docker/buildkit.sh build $(python3 infra/docker/build_secrets.py) ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CA_SECRET = "corral-ca.crt"  # mounted at /run/secrets/corral-ca.crt
PIP_SECRET = "corral-pip.conf"  # mounted at /etc/pip.conf
KEPT = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout", "retries")
CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def pip_config() -> dict[str, str]:
    """``key -> value`` of pip's effective configuration (files and PIP_* variables), later ones winning."""
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    found: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"[^.]*\.([a-z-]+)='(.*)'", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def ca_bundle(config: dict[str, str]) -> Path | None:
    """The CA bundle pip trusts here: PIP_CERT or pip's ``cert``, the requests/OpenSSL variables, the system one."""
    for value in (os.environ.get("PIP_CERT"), config.get("cert"), os.environ.get("REQUESTS_CA_BUNDLE"),
                  os.environ.get("SSL_CERT_FILE"), *CA_CANDIDATES):
        if value and Path(value).is_file():
            return Path(value)
    return None


def pip_conf(config: dict[str, str], has_ca: bool) -> str:
    """A pip.conf for the build: the index and network settings, and the CA at its secret's mount point."""
    kept = {key: " ".join(v for v in config.get(key, "").split() if not v.startswith("file:")) for key in KEPT}
    lines = [f"{key} = {value}" for key, value in kept.items() if value]
    if has_ca:
        lines.append(f"cert = /run/secrets/{CA_SECRET}")
    return "[global]\n" + "\n".join(lines) + "\n" if lines else ""


def main() -> int:
    """Write the secret files to a private folder and print the flags naming them."""
    config = pip_config()
    ca = ca_bundle(config)
    conf = pip_conf(config, ca is not None)
    if not conf:
        return 0
    folder = Path(tempfile.gettempdir()) / f"corral-build-secrets-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    flags = []
    if ca is not None:
        shutil.copyfile(ca, folder / CA_SECRET)
        flags.append(f"--secret id={CA_SECRET},src={folder / CA_SECRET}")
    (folder / PIP_SECRET).write_text(conf)
    flags.append(f"--secret id={PIP_SECRET},src={folder / PIP_SECRET}")
    print(" ".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
