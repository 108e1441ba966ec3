"""Shared code of every corral service: schemas, errors, names, storage paths, jobs, logs and the wire helpers."""

from corral_common import astguard

astguard.install()  # before any thread can parse: every service and the CLI import this package first
