"""``corral registry``: the /v2 registry alone on CORRAL_REGISTRY_HOST, storing under CORRAL_REGISTRY_DATA."""

from __future__ import annotations

from fastapi import FastAPI

from corral_common.logs import configure_telemetry, get_logger

from corral_registry.settings import RegistrySettings

log = get_logger("corral.registry.standalone")


def create_registry_app(settings: RegistrySettings | None = None) -> FastAPI:
    """The standalone registry app (uvicorn factory: ``corral_registry.standalone:create_registry_app``)."""
    from corral_registry.main import create_app

    return create_app((settings or RegistrySettings.from_env()).standalone())


create_app = create_registry_app  # the name `corral serve`'s supervisor starts services by


def run(settings: RegistrySettings | None = None) -> int:
    """Serve in the foreground until Ctrl+C (SQLite and the filesystem unless configured otherwise)."""
    import uvicorn

    settings = (settings or RegistrySettings.from_env()).standalone()
    configure_telemetry("registry", settings.debug, settings.telemetry)
    listen = settings.registry_listen
    log.info("corral registry listening", address=f"{listen.host}:{listen.port}", data=str(settings.registry_data),
             storage=settings.storage.driver)
    uvicorn.run(create_registry_app(settings), host=listen.host, port=listen.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)
    return 0
