"""Shared helpers of the registry tests: a moto S3 server on loopback and Postgres schemas."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone S3 server in a thread on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_driver(endpoint: str, part_size: int = 5 << 20):
    """An S3 driver on a fresh bucket of the moto server."""
    from corral_registry.storage.s3 import S3Config, S3Driver

    config = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", prefix="root", endpoint_url=endpoint,
                      region="us-east-1", access_key="test", secret_key="test", part_size=part_size)
    driver = S3Driver(config)
    driver.ensure_bucket()
    return driver


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A throwaway schema in the local Postgres; yields a URL whose search_path points at it."""
    import sqlalchemy

    schema = f"reg_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
