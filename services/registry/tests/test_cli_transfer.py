"""The CLI side of transfers: per-layer progress bars, and ``corral prune`` on a registry's storage."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from corral_cli.commands.transfer import show_transfer_progress
from corral_cli.main import main
from corral_cli.progress import Progress
from corral_common import store_paths as paths
from corral_common.digest import Digest
from corral_registry.storage.filesystem import FilesystemDriver

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_each_layer_gets_its_own_bar_and_each_status_a_line() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    chunks = [{"status": "pulling manifest"},
              {"status": f"pulling {A[7:19]}", "digest": A, "total": 100, "completed": 0},
              {"status": f"pulling {B[7:19]}", "digest": B, "total": 50, "completed": 50},
              {"status": f"pulling {A[7:19]}", "digest": A, "total": 100, "completed": 100},
              {"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    show_transfer_progress(chunks, progress, "pulling")
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "pulling manifest"
    assert f"pulling {A[7:19]}... 0%" in lines and f"pulling {B[7:19]}... 100%" in lines
    assert f"pulling {A[7:19]}... 100%" in lines
    assert lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]


def test_prune_deletes_unreferenced_blobs_of_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "registry"
    orphan = Digest.of_bytes(b"orphan")
    FilesystemDriver(data).put_content(paths.blob_key(orphan), b"orphan")
    monkeypatch.setenv("CORRAL_REGISTRY_DATA", str(data))
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CORRAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("CORRAL_S3_BUCKET", raising=False)
    assert main(["prune", "--dry-run", "--grace", "0"]) == 0
    assert f"would delete {orphan}" in capsys.readouterr().out
    assert (data / "blobs" / orphan.filename()).exists()
    assert main(["prune", "--grace", "0"]) == 0
    assert f"deleted {orphan}" in capsys.readouterr().out
    assert not (data / "blobs" / orphan.filename()).exists()
