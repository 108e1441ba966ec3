"""Each service's memory ceiling, which the process sets on itself when it starts (issue 18 item 1): a runaway
request then fails alone (MemoryError, a 503) instead of growing the process until the kernel's OOM killer
takes the host's other processes with it.

The ceiling is RLIMIT_DATA, which counts private writable memory (the heap, anonymous mappings, thread stacks)
but not file mappings: llama.cpp maps model files read-only and shared, so a model of any size still loads,
while RLIMIT_AS (address space) would refuse the mapping itself. CORRAL_MEMORY_LIMIT sets the ceiling of each
service process (``8GiB``; ``0`` for none); by default inference and the job worker (the processes that hold
models and KV caches, or convert them) may use 3/4 of the machine's memory and every other service 1/4.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from corral_common.env import env_str, parse_bytes
from corral_common.errors import ServiceUnavailable
from corral_common.jsonio import go_dumps

LIMIT_VAR = "CORRAL_MEMORY_LIMIT"
LARGE_SERVICES = ("corral_inference", "celery")  # the service module (or command) names corral_cli.launch runs
LARGE_SHARE, SMALL_SHARE = 3 / 4, 1 / 4
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


class OutOfMemory(ServiceUnavailable):
    """A request that needed more memory than the service's ceiling allows."""

    def __init__(self) -> None:
        super().__init__(f"out of memory: this request needed more memory than the service may use ({LIMIT_VAR}); "
                         "send a smaller request")


def machine_memory() -> int:
    """Physical memory, or the container's memory limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            total = min(total, int(path.read_text().strip()))
        except (OSError, ValueError):  # absent, or "max": no container limit
            continue
    return total


def memory_limit(service: str, environ: Mapping[str, str]) -> int | None:
    """The ceiling in bytes for a service (``corral_inference.main``, ``celery``, ...); None for none."""
    value = env_str(environ, LIMIT_VAR)
    if value:
        try:
            return parse_bytes(value) or None
        except ValueError:
            pass  # an unreadable value keeps the default, as the other size variables do
    share = LARGE_SHARE if service.startswith(LARGE_SERVICES) else SMALL_SHARE
    return int(machine_memory() * share)


def apply_memory_limit(service: str, environ: Mapping[str, str] | None = None) -> int | None:
    """Set this process's RLIMIT_DATA to the service's ceiling (never above a hard limit already set); the
    ceiling set, or None."""
    limit = memory_limit(service, os.environ if environ is None else environ)
    if limit is None:
        return None
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


def install_memory_error_handler(app: FastAPI) -> None:
    """A MemoryError (the ceiling reached) ends that request with a 503 naming the cause; the service lives on."""

    async def handle(_request: Request, _exc: MemoryError) -> Response:
        error = OutOfMemory()
        return Response(go_dumps(error.body()), status_code=error.status,
                        media_type="application/json; charset=utf-8")

    app.add_exception_handler(MemoryError, handle)  # type: ignore[arg-type]
