"""The registry protocol Ollama's client speaks (``/v2/<namespace>/<model>/...``): adapters over ``Registry``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from corral_registry.v2.deps import BaseAccess, CatalogAccess, RegistryDep, RelayDep, RepoDep
from corral_registry.v2.errors import RegistryError
from corral_registry.v2.names import parse_digest, parse_reference, parse_repo_text
from corral_registry.v2.ranges import parse_content_range, parse_range
from corral_registry.v2.blob_io import read_blocks
from corral_registry.v2.service import MANIFEST_TYPES, Upload
from corral_registry.v2.tokenauth import may, needed_for

router = APIRouter(prefix="/v2")
realm_router = APIRouter()


def _absolute(request: Request, path: str) -> str:
    """An absolute URL on the host the client used (Go's client cannot follow relative upload URLs)."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}{path}"


def _length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def _upload_response(request: Request, repo: object, upload: Upload, status: int = 202) -> Response:
    location = _absolute(request, f"/v2/{repo}/blobs/uploads/{upload.id.hex}")
    headers = {"Location": location, "Docker-Upload-UUID": str(upload.id),
               "Range": f"0-{max(upload.offset - 1, 0)}", "Content-Length": "0"}
    return Response(status_code=status, headers=headers)


def _blob_created(request: Request, repo: object, digest: object) -> Response:
    headers = {"Location": _absolute(request, f"/v2/{repo}/blobs/{digest}"), "Docker-Content-Digest": str(digest),
               "Content-Length": "0"}
    return Response(status_code=201, headers=headers)


@router.get("/")
async def ping(_access: BaseAccess) -> JSONResponse:
    return JSONResponse({})


@router.get("/_catalog")
async def catalog(_access: CatalogAccess, registry: RegistryDep, n: int | None = None, last: str = "") -> JSONResponse:
    names = [r for r in await asyncio.to_thread(registry.catalog) if r > last]
    return JSONResponse({"repositories": names[:n] if n is not None else names})


@realm_router.get("/token")
async def token(request: Request, relay: RelayDep) -> Response:
    answer, body = await relay.forward(request)
    return Response(body, status_code=answer.status_code,
                    media_type=answer.headers.get("content-type", "application/json"))


@router.get("/{namespace}/{model}/tags/list")
async def tags(repo: RepoDep, registry: RegistryDep, n: int | None = None, last: str = "") -> JSONResponse:
    names = [t for t in await asyncio.to_thread(registry.tags, repo) if t > last]
    return JSONResponse({"name": str(repo), "tags": names[:n] if n is not None else names})


@router.api_route("/{namespace}/{model}/manifests/{reference}", methods=["GET", "HEAD"])
async def get_manifest(reference: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    ref = parse_reference(reference, registry.layout_host)
    raw, digest = await asyncio.to_thread(registry.get_manifest, repo, ref)
    headers = {"Docker-Content-Digest": str(digest), "Content-Length": str(len(raw))}
    body = b"" if request.method == "HEAD" else raw
    return Response(body, headers=headers, media_type=MANIFEST_TYPES[0])


@router.put("/{namespace}/{model}/manifests/{reference}")
async def put_manifest(reference: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    ref = parse_reference(reference, registry.layout_host)
    body = await _bounded_body(request)
    digest = await asyncio.to_thread(registry.put_manifest, repo, ref, body, request.headers.get("content-type", ""))
    location = _absolute(request, f"/v2/{repo}/manifests/{digest}")
    return Response(status_code=201, headers={"Location": location, "Docker-Content-Digest": str(digest)})


async def _bounded_body(request: Request) -> bytes:
    """A manifest body, refused with 413 past 4 MiB (declared or streamed)."""
    from corral_registry.manifest import MAX_MANIFEST_BYTES

    if (_length(request) or 0) > MAX_MANIFEST_BYTES:
        raise RegistryError("TOO_LARGE", {"limit": MAX_MANIFEST_BYTES})
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError("TOO_LARGE", {"limit": MAX_MANIFEST_BYTES})
    return bytes(data)


@router.delete("/{namespace}/{model}/manifests/{reference}")
async def delete_manifest(reference: str, repo: RepoDep, registry: RegistryDep) -> Response:
    await asyncio.to_thread(registry.delete_manifest, repo, parse_reference(reference, registry.layout_host))
    return Response(status_code=202)


@router.api_route("/{namespace}/{model}/blobs/{digest}", methods=["GET", "HEAD"])
async def get_blob(digest: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    parsed = parse_digest(digest)
    info = await asyncio.to_thread(registry.blob_info, parsed)
    headers = {"Docker-Content-Digest": str(parsed), "Accept-Ranges": "bytes", "Content-Length": str(info.size)}
    if request.method == "HEAD":
        return Response(headers=headers, media_type="application/octet-stream")
    url = await asyncio.to_thread(registry.blob_url, parsed)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Docker-Content-Digest": str(parsed)})
    span = parse_range(request.headers.get("range"), info.size)
    start, end = span or (0, info.size - 1)
    stream = await asyncio.to_thread(registry.open_blob, parsed, start)
    headers["Content-Length"] = str(end - start + 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    return StreamingResponse(read_blocks(stream, end - start + 1), status_code=206 if span else 200,
                             headers=headers, media_type="application/octet-stream")


@router.delete("/{namespace}/{model}/blobs/{digest}")
async def delete_blob(digest: str, repo: RepoDep, registry: RegistryDep) -> Response:
    await asyncio.to_thread(registry.delete_blob, parse_digest(digest))
    return Response(status_code=202)


@router.post("/{namespace}/{model}/blobs/uploads/")
@router.post("/{namespace}/{model}/blobs/uploads")
async def start_upload(request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    params = request.query_params
    if "mount" in params:
        digest = parse_digest(params["mount"])
        source = parse_repo_text(params.get("from", ""), registry.layout_host)
        readable = source is not None and await may(request, needed_for("GET", source))
        if readable and await asyncio.to_thread(registry.mount, digest):
            return _blob_created(request, repo, digest)
    elif "digest" in params:
        digest = parse_digest(params["digest"])
        await registry.put_monolithic(digest, request.stream(), _length(request))
        return _blob_created(request, repo, digest)
    return _upload_response(request, repo, await asyncio.to_thread(registry.start_upload, repo))


@router.get("/{namespace}/{model}/blobs/uploads/{upload_id}")
async def upload_status(upload_id: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    return _upload_response(request, repo, await asyncio.to_thread(registry.upload, repo, upload_id), 204)


@router.patch("/{namespace}/{model}/blobs/uploads/{upload_id}")
async def patch_upload(upload_id: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    upload = await asyncio.to_thread(registry.upload, repo, upload_id)
    span = parse_content_range(request.headers.get("content-range"))
    length = _length(request) if span is None else span[1] - span[0] + 1
    upload = await registry.append(upload, span[0] if span else None, request.stream(), length)
    return _upload_response(request, repo, upload)


@router.put("/{namespace}/{model}/blobs/uploads/{upload_id}")
async def finish_upload(upload_id: str, request: Request, repo: RepoDep, registry: RegistryDep) -> Response:
    digest = parse_digest(request.query_params.get("digest", ""))
    upload = await asyncio.to_thread(registry.upload, repo, upload_id)
    if upload.offset == 0 and (_length(request) or 0) > 0:
        try:
            await registry.put_monolithic(digest, request.stream(), _length(request))
        finally:
            await asyncio.to_thread(registry.cancel, upload)
        return _blob_created(request, repo, digest)
    upload = await registry.append(upload, None, request.stream(), _length(request))
    await asyncio.to_thread(registry.finish, upload, digest)
    return _blob_created(request, repo, digest)


@router.delete("/{namespace}/{model}/blobs/uploads/{upload_id}")
async def cancel_upload(upload_id: str, repo: RepoDep, registry: RegistryDep) -> Response:
    await asyncio.to_thread(registry.cancel, await asyncio.to_thread(registry.upload, repo, upload_id))
    return Response(status_code=204)


@router.api_route("/{path:path}", methods=["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"])
async def unknown(path: str) -> Response:
    raise RegistryError("NAME_UNKNOWN", {"path": path})
