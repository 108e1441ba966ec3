"""The /v2 registry protocol through the app, on filesystem+SQLite, in-memory+SQLite and S3 (moto)+PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from corral_common import store_paths as paths
from corral_common.testing.backends import moto_server, port_open, postgres_schema
from corral_registry.main import create_app
from corral_registry.settings import RegistrySettings, StorageSettings

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
BACKENDS = ["filesystem", "inmemory", "s3+postgres"]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def _settings(tmp_path: Path, storage: StorageSettings, database_url: str = "") -> RegistrySettings:
    base = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home", registry_data=tmp_path / "data",
                            storage=storage, database_url=database_url)
    return base.standalone()


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistrySettings]:
    if request.param == "filesystem":
        yield _settings(tmp_path, StorageSettings(driver="filesystem", root=tmp_path / "data"))
    elif request.param == "inmemory":
        yield _settings(tmp_path, StorageSettings(driver="inmemory"))
    else:
        if not port_open("127.0.0.1", 5432):
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
        endpoint = request.getfixturevalue("s3_endpoint")
        storage = StorageSettings(driver="s3", s3_bucket=f"b{abs(hash(tmp_path)) % 10**9}", s3_prefix="reg",
                                  s3_endpoint_url=endpoint, s3_region="us-east-1")
        with postgres_schema() as url:
            yield _settings(tmp_path, storage, url)


@pytest.fixture
def api(settings: RegistrySettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client


def _push_blob(api: TestClient, data: bytes, repo: str = "team/m") -> str:
    digest = digest_of(data)
    response = api.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


def _manifest(api: TestClient, layers: list[bytes], repo: str = "team/m") -> bytes:
    config = b'{"model_format":"gguf","model_family":"llama"}'
    body = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": _push_blob(api, config, repo), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": _push_blob(api, data, repo),
                        "size": len(data)} for data in layers]}
    return json.dumps(body).encode() + b"\n"


def _read_blob(api: TestClient, digest: str, repo: str = "team/m") -> bytes:
    """A blob's bytes, following a redirect to presigned storage with a real HTTP client."""
    response = api.get(f"/v2/{repo}/blobs/{digest}")
    if response.status_code == 307:
        response = httpx.get(response.headers["location"], trust_env=False)
    assert response.status_code == 200, response.text
    return response.content


def _error_code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


def test_ping_names_the_protocol(api: TestClient) -> None:
    response = api.get("/v2/")
    assert response.status_code == 200 and response.json() == {}
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_missing_blob_is_404_blob_unknown(api: TestClient) -> None:
    missing = digest_of(b"nope")
    for method in ("GET", "HEAD"):
        response = api.request(method, f"/v2/team/m/blobs/{missing}")
        assert response.status_code == 404
    assert _error_code(api.get(f"/v2/team/m/blobs/{missing}")) == "BLOB_UNKNOWN"


def test_monolithic_upload_then_read(api: TestClient) -> None:
    data = b"hello blob" * 1000
    digest = digest_of(data)
    response = api.post(f"/v2/team/m/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["location"].endswith(f"/v2/team/m/blobs/{digest}")
    head = api.head(f"/v2/team/m/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    assert head.headers["docker-content-digest"] == digest
    assert _read_blob(api, digest) == data


@pytest.mark.parametrize("bad", ["sha256:abc", "../etc/passwd", "sha256:" + "a" * 65, "md5:" + "a" * 32,
                                 "sha256:" + "g" * 64])
def test_malformed_digests_are_400(api: TestClient, bad: str) -> None:
    assert api.post(f"/v2/team/m/blobs/uploads/?digest={bad}", content=b"x").status_code == 400
    assert api.get(f"/v2/team/m/blobs/{bad}").status_code in (400, 404)


def test_wrong_digest_is_rejected_and_nothing_becomes_visible(api: TestClient) -> None:
    claimed = digest_of(b"what the client says")
    response = api.post(f"/v2/team/m/blobs/uploads/?digest={claimed}", content=b"what it sends")
    assert response.status_code == 400 and _error_code(response) == "DIGEST_INVALID"
    assert api.head(f"/v2/team/m/blobs/{claimed}").status_code == 404


def test_content_length_mismatch_is_size_invalid(api: TestClient) -> None:
    start = api.post("/v2/team/m/blobs/uploads/")
    response = api.patch(start.headers["location"], content=b"12345", headers={"Content-Range": "0-9"})
    assert response.status_code == 400 and _error_code(response) == "SIZE_INVALID"


def test_post_then_put_with_the_whole_blob(api: TestClient) -> None:
    data = b"post+put" * 100
    start = api.post("/v2/team/m/blobs/uploads/")
    assert start.status_code == 202 and start.headers["docker-upload-uuid"]
    done = api.put(f"{start.headers['location']}?digest={digest_of(data)}", content=data)
    assert done.status_code == 201
    assert _read_blob(api, digest_of(data)) == data


def test_chunked_upload_in_order_with_status_and_out_of_order_refusal(api: TestClient) -> None:
    data = bytes(range(256)) * 40
    first, second = data[:4000], data[4000:]
    location = api.post("/v2/team/m/blobs/uploads/").headers["location"]
    response = api.patch(location, content=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert response.status_code == 202 and response.headers["range"] == f"0-{len(first) - 1}"
    again = api.patch(location, content=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert again.status_code == 416
    status = api.get(location)
    assert status.status_code == 204 and status.headers["range"] == f"0-{len(first) - 1}"
    response = api.patch(response.headers["location"], content=second,
                         headers={"Content-Range": f"{len(first)}-{len(data) - 1}"})
    assert response.status_code == 202
    done = api.put(f"{response.headers['location']}?digest={digest_of(data)}")
    assert done.status_code == 201 and done.headers["docker-content-digest"] == digest_of(data)
    assert _read_blob(api, digest_of(data)) == data
    assert api.get(location).status_code == 404


def test_chunked_upload_with_wrong_digest_publishes_nothing_and_ends_the_session(api: TestClient) -> None:
    location = api.post("/v2/team/m/blobs/uploads/").headers["location"]
    api.patch(location, content=b"abc", headers={"Content-Range": "0-2"})
    wrong = digest_of(b"abd")
    response = api.put(f"{location}?digest={wrong}")
    assert response.status_code == 400 and _error_code(response) == "DIGEST_INVALID"
    assert api.head(f"/v2/team/m/blobs/{wrong}").status_code == 404
    assert _error_code(api.get(location)) == "BLOB_UPLOAD_UNKNOWN"


def test_a_chunk_racing_another_on_the_same_upload_is_refused_and_the_upload_survives(api: TestClient) -> None:
    registry = api.app.state.registry
    if not registry.driver.can_append:
        pytest.skip("chunks are objects of their own on this storage")
    data = bytes(range(256)) * 40
    location = api.post("/v2/team/m/blobs/uploads/").headers["location"]
    assert api.patch(location, content=data[:3000], headers={"Content-Range": "0-2999"}).status_code == 202
    session = uuid.UUID(hex=location.rstrip("/").rsplit("/", 1)[1])
    with registry.driver.appender(paths.upload_chunk_key(session, 0), 3000):  # another request, mid-chunk
        raced = api.patch(location, content=b"x" * 100, headers={"Content-Range": "3000-3099"})
        assert raced.status_code == 416 and raced.headers["range"] == "0-2999"
    rest = api.patch(location, content=data[3000:], headers={"Content-Range": f"3000-{len(data) - 1}"})
    assert rest.status_code == 202
    assert api.put(f"{location}?digest={digest_of(data)}").status_code == 201
    assert _read_blob(api, digest_of(data)) == data


def test_a_chunked_upload_outlives_a_registry_restart_and_is_verified_from_storage(
        settings: RegistrySettings, monkeypatch: pytest.MonkeyPatch) -> None:
    if settings.storage.driver == "inmemory":
        pytest.skip("memory storage ends with its process")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    good, bad = bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 40
    with TestClient(create_app(settings), follow_redirects=False) as api:
        locations = [api.post("/v2/team/m/blobs/uploads/").headers["location"] for _ in (good, bad)]
        for location, data in zip(locations, (good, bad)):
            assert api.patch(location, content=data[:3000], headers={"Content-Range": "0-2999"}).status_code == 202
    if settings.storage.driver == "filesystem":  # the second upload's first chunk rots on disk meanwhile
        session = uuid.UUID(hex=locations[1].rstrip("/").rsplit("/", 1)[1])
        stored = settings.storage.root / paths.upload_chunk_key(session, 0)
        stored.write_bytes(b"\0" + stored.read_bytes()[1:])
    else:
        bad = good
    with TestClient(create_app(settings), follow_redirects=False) as api:
        for location, data in zip(locations, (good, bad)):
            assert api.patch(location, content=data[3000:],
                             headers={"Content-Range": f"3000-{len(data) - 1}"}).status_code == 202
        assert api.put(f"{locations[0]}?digest={digest_of(good)}").status_code == 201
        assert _read_blob(api, digest_of(good)) == good
        if settings.storage.driver == "filesystem":
            rotten = api.put(f"{locations[1]}?digest={digest_of(bad)}")
            assert rotten.status_code == 400 and _error_code(rotten) == "DIGEST_INVALID"
            assert api.head(f"/v2/team/m/blobs/{digest_of(bad)}").status_code == 404


def test_cancelled_upload_is_gone(api: TestClient) -> None:
    location = api.post("/v2/team/m/blobs/uploads/").headers["location"]
    assert api.delete(location).status_code == 204
    assert api.patch(location, content=b"x").status_code == 404


def test_upload_sessions_belong_to_their_repository(api: TestClient) -> None:
    location = api.post("/v2/team/m/blobs/uploads/").headers["location"]
    assert api.get(location.replace("/team/m/", "/team/other/")).status_code == 404


def test_cross_repository_mount(api: TestClient) -> None:
    digest = _push_blob(api, b"shared layer", "team/source")
    mounted = api.post(f"/v2/team/target/blobs/uploads/?mount={digest}&from=team/source")
    assert mounted.status_code == 201 and mounted.headers["docker-content-digest"] == digest
    missing = api.post(f"/v2/team/target/blobs/uploads/?mount={digest_of(b'absent')}&from=team/source")
    assert missing.status_code == 202 and "location" in missing.headers


@pytest.mark.parametrize("header,status,expected", [
    ("bytes=500-1499", 206, slice(500, 1500)), ("bytes=500-", 206, slice(500, None)),
    ("bytes=-500", 206, slice(-500, None)), ("bytes=2000-5000", 206, slice(2000, None)),
    ("bytes=500-0", 416, None), ("bytes=5000-10000", 416, None),
])
def test_range_requests(api: TestClient, settings: RegistrySettings, header: str, status: int,
                        expected: slice | None) -> None:
    if settings.storage.driver == "s3":
        pytest.skip("S3 answers blob reads with a redirect; ranges are served by S3 itself")
    data = bytes(i % 251 for i in range(3000))
    digest = _push_blob(api, data)
    response = api.get(f"/v2/team/m/blobs/{digest}", headers={"Range": header})
    assert response.status_code == status
    if expected is not None:
        assert response.content == data[expected]
        assert response.headers["content-range"].endswith("/3000")


def test_s3_blob_reads_redirect_to_a_presigned_url_that_honours_ranges(api: TestClient,
                                                                        settings: RegistrySettings) -> None:
    if settings.storage.driver != "s3":
        pytest.skip("only S3 presigns")
    data = b"0123456789" * 1000
    digest = _push_blob(api, data)
    response = api.get(f"/v2/team/m/blobs/{digest}")
    assert response.status_code == 307
    direct = response.headers["location"]
    assert "X-Amz-Signature" in direct
    ranged = httpx.get(direct, headers={"Range": "bytes=10-19"}, trust_env=False)
    assert ranged.status_code == 206 and ranged.content == data[10:20]


def test_manifest_push_pull_by_tag_and_digest(api: TestClient) -> None:
    body = _manifest(api, [b"weights" * 100])
    response = api.put("/v2/team/m/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE})
    assert response.status_code == 201, response.text
    digest = response.headers["docker-content-digest"]
    assert digest == digest_of(body)
    by_tag = api.get("/v2/team/m/manifests/v1", headers={"Accept": MANIFEST_TYPE})
    assert by_tag.content == body and by_tag.headers["docker-content-digest"] == digest
    assert by_tag.headers["content-type"].startswith(MANIFEST_TYPE)
    assert api.get(f"/v2/team/m/manifests/{digest}").content == body
    head = api.head("/v2/team/m/manifests/v1")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(body))
    assert api.get("/v2/team/m/tags/list").json() == {"name": "team/m", "tags": ["v1"]}
    assert "team/m" in api.get("/v2/_catalog").json()["repositories"]
    assert api.get(f"/v2/team/other/manifests/{digest}").status_code == 404


def test_tag_listing_paginates(api: TestClient) -> None:
    body = _manifest(api, [b"w"])
    for tag in ("c", "a", "b"):
        api.put(f"/v2/team/m/manifests/{tag}", content=body, headers={"Content-Type": MANIFEST_TYPE})
    assert api.get("/v2/team/m/tags/list").json()["tags"] == ["a", "b", "c"]
    assert api.get("/v2/team/m/tags/list?n=2").json()["tags"] == ["a", "b"]
    assert api.get("/v2/team/m/tags/list?n=2&last=b").json()["tags"] == ["c"]


def test_manifest_with_unknown_blobs_is_refused(api: TestClient) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                       "config": {"mediaType": "x", "digest": digest_of(b"no config"), "size": 9},
                       "layers": []}).encode()
    response = api.put("/v2/team/m/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE})
    assert response.status_code == 400 and _error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert api.get("/v2/team/m/manifests/v1").status_code == 404


@pytest.mark.parametrize("layer_digest", ["../../../../etc/passwd", "sha256:" + "a" * 63, "sha256:../../x",
                                          "sha256:" + "a" * 64 + "\n"])
def test_manifest_with_path_trick_digests_is_invalid(api: TestClient, layer_digest: str) -> None:
    config = _push_blob(api, b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                       "config": {"mediaType": "x", "digest": config, "size": 2},
                       "layers": [{"mediaType": "m", "digest": layer_digest, "size": 1}]}).encode()
    response = api.put("/v2/team/m/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE})
    assert response.status_code == 400 and _error_code(response) == "MANIFEST_INVALID"


def test_manifest_checks(api: TestClient) -> None:
    body = _manifest(api, [b"w"])
    wrong = api.put(f"/v2/team/m/manifests/{digest_of(b'other')}", content=body,
                    headers={"Content-Type": MANIFEST_TYPE})
    assert wrong.status_code == 400 and _error_code(wrong) == "DIGEST_INVALID"
    by_digest = api.put(f"/v2/team/m/manifests/{digest_of(body)}", content=body,
                        headers={"Content-Type": MANIFEST_TYPE})
    assert by_digest.status_code == 201
    assert api.put("/v2/team/m/manifests/v1", content=body, headers={"Content-Type": "text/plain"}).status_code == 400
    assert _error_code(api.put("/v2/team/m/manifests/v1", content=b"not json",
                               headers={"Content-Type": MANIFEST_TYPE})) == "MANIFEST_INVALID"
    huge = api.put("/v2/team/m/manifests/v1", content=b" " * (4 << 20 | 1), headers={"Content-Type": MANIFEST_TYPE})
    assert huge.status_code == 413


def test_delete_tag_and_manifest(api: TestClient) -> None:
    body = _manifest(api, [b"w2"])
    for tag in ("v1", "v2"):
        api.put(f"/v2/team/m/manifests/{tag}", content=body, headers={"Content-Type": MANIFEST_TYPE})
    assert api.delete("/v2/team/m/manifests/v1").status_code == 202
    assert api.get("/v2/team/m/manifests/v1").status_code == 404
    assert api.get("/v2/team/m/tags/list").json()["tags"] == ["v2"]
    assert api.delete(f"/v2/team/m/manifests/{digest_of(body)}").status_code == 202
    assert api.get("/v2/team/m/manifests/v2").status_code == 404
    assert api.get(f"/v2/team/m/manifests/{digest_of(body)}").status_code == 404
    assert api.delete("/v2/team/m/manifests/v2").status_code == 404


def test_names_are_validated(api: TestClient) -> None:
    assert _error_code(api.get("/v2/team.x/m/tags/list")) == "NAME_INVALID"
    assert _error_code(api.get("/v2/team/m/manifests/bad%20tag")) == "TAG_INVALID"
    assert _error_code(api.get("/v2/team/never/tags/list")) == "NAME_UNKNOWN"
    assert api.get("/v2/only-one/manifests/latest").status_code == 404


def test_tag_files_already_in_storage_are_indexed_at_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path, StorageSettings(driver="filesystem", root=tmp_path / "data"))
    with TestClient(create_app(settings)) as api:
        body = _manifest(api, [b"layer"])
    tag_file = tmp_path / "data/manifests/registry.ollama.ai/library/local/latest"
    tag_file.parent.mkdir(parents=True)
    tag_file.write_bytes(body)  # as the local store writes it
    with TestClient(create_app(replace(settings))) as api:
        assert api.get("/v2/library/local/tags/list").json()["tags"] == ["latest"]
        assert api.get("/v2/library/local/manifests/latest").content == body
        assert api.get(f"/v2/library/local/manifests/{digest_of(body)}").content == body
