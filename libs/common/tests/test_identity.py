"""The ed25519 identity file: created once with its ``.pub``, loaded as it is afterwards."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from corral_common.identity import identity_path, load_identity, public_blob, public_line


def test_identity_path_is_under_corral_home(tmp_path: Path) -> None:
    assert identity_path({"CORRAL_HOME": str(tmp_path)}) == tmp_path / "id_ed25519"


def test_absent_key_is_none_unless_created(tmp_path: Path) -> None:
    path = tmp_path / "home" / "id_ed25519"
    assert load_identity(path) is None and not path.exists()
    key = load_identity(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.parent / "id_ed25519.pub").read_text() == public_line(key) + "\n"
    assert public_line(key).startswith("ssh-ed25519 ") and public_line(key).split()[1] == public_blob(key)


def test_an_existing_key_is_loaded_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    first = load_identity(path, create=True)
    again = load_identity(path, create=True)
    assert public_blob(again) == public_blob(first)
    load_ssh_public_key(public_line(again).encode()).verify(first.sign(b"x"), b"x")
