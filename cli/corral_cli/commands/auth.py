"""``corral admin``, ``corral keys``, ``corral signin`` and ``corral signout``.

``admin`` works on the server's own auth database (run it where corral serves; no key needed);
``keys`` uses OLLAMA_API_KEY (or a signed-in device key); ``signin`` binds ``$CORRAL_HOME/id_ed25519``
to an account once someone with the admin scope approves its one-time code, which works over SSH.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from corral_cli.client import Client, ServerError, _error_message
from corral_cli.errors import CliError
from corral_cli.formatting import human_time, now_utc, parse_time
from corral_cli.table import render_table
from corral_common.env import current_env
from corral_common.identity import identity_path, load_identity, signed_request

SCOPES = ("inference", "models:read", "models:write", "web", "admin")
_DURATION = re.compile(r"(\d+)([dhm])")


# --- the device key and Ollama-format signatures -------------------------------------------------

def device_key_path() -> Path:
    """``$CORRAL_HOME/id_ed25519`` (``~/.corral/id_ed25519``)."""
    return identity_path(current_env())


def load_device_key(create: bool = False) -> Any:
    """The ed25519 private key (OpenSSH format), created with its ``.pub`` when asked and absent."""
    return load_identity(device_key_path(), create)


def signed_uri(key: Any, method: str, path: str) -> tuple[str, str]:
    """The path with ``ts`` and ``nonce`` added, and its ``Authorization`` value ``<key blob>:<signature>``."""
    return signed_request(key, method, path)


def _call(client: Client, method: str, path: str, body: Any = None, key: Any = None) -> Any:
    """One JSON call, signed with the device key when one is given or no API key is set."""
    key = key if key is not None else (None if "authorization" in client._http.headers else load_device_key())
    headers, uri = {}, path
    if key is not None:
        uri, headers["Authorization"] = signed_uri(key, method, path)
    try:
        # the shared client carries OLLAMA_API_KEY; a signed call replaces it for this request only
        response = client._http.request(method, uri, json=body, headers=headers)
    except httpx.HTTPError as error:
        raise CliError(str(error) or type(error).__name__) from error
    if response.is_error:
        raise ServerError(response.status_code, _error_message(response))
    return response.json() if response.content.strip() else None


# --- corral admin -----------------------------------------------------------------------------------

def _auth_admin() -> Any:
    try:
        from corral_auth import admin
        from corral_auth.settings import AuthSettings
    except ImportError:
        raise CliError("corral admin runs where the server runs (it needs the corral-auth package)") from None
    return admin, AuthSettings.from_env()


def admin_bootstrap(_client: Client | None, args: argparse.Namespace) -> int:
    """``corral admin bootstrap``: the first admin user; its key is printed alone on the last line."""
    from corral_common.errors import AppError

    admin, settings = _auth_admin()
    try:
        issued = admin.bootstrap(settings, args.name)
    except AppError as error:
        raise CliError(error.message) from None
    sys.stdout.write(f"Created admin user {args.name!r} with an API key holding every scope.\n"
                     "It is shown only this once: keep it secret and use it as OLLAMA_API_KEY.\n"
                     f"{issued.key}\n")
    return 0


def admin_create_user(_client: Client | None, args: argparse.Namespace) -> int:
    """``corral admin create-user NAME``."""
    from corral_common.errors import AppError

    admin, settings = _auth_admin()
    try:
        admin.create_user(settings, args.name, args.admin)
    except AppError as error:
        raise CliError(error.message) from None
    sys.stdout.write(f"Created user {args.name!r}. Give them a key with: corral keys create NAME --user {args.name}\n")
    return 0


# --- corral keys ----------------------------------------------------------------------------------

def parse_expires(text: str | None, now: datetime | None = None) -> str | None:
    """``30d``, ``12h``, ``90m`` or an RFC 3339 time → RFC 3339."""
    if not text:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return text.strip()
    unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    when = (now or datetime.now(UTC)) + timedelta(**{unit: int(match.group(1))})
    return when.isoformat().replace("+00:00", "Z")


def keys_create(client: Client, args: argparse.Namespace) -> int:
    """``corral keys create NAME``: the new key is printed alone on the last line."""
    body = {"name": args.name, "scopes": args.scope or None, "expires_at": parse_expires(args.expires),
            "user": args.user, "tokens_per_hour": args.tokens_per_hour,
            "requests_per_minute": args.requests_per_minute}
    issued = _call(client, "POST", "/api/keys", {k: v for k, v in body.items() if v is not None})
    scopes = ", ".join(issued.get("scopes") or [])
    sys.stdout.write(f"Created key {issued['id']} ({issued.get('name')}) for {issued.get('user')} with scopes: "
                     f"{scopes}.\nIt is shown only this once:\n{issued['key']}\n")
    return 0


def render_keys(keys: list[dict[str, Any]], now: datetime) -> str:
    """The ``corral keys list`` table."""
    rows = []
    for key in keys:
        status = "revoked" if key.get("revoked_at") else "active"
        expires = parse_time(key.get("expires_at"))
        if status == "active" and expires is not None and expires <= now:
            status = "expired"
        rows.append([key["id"], str(key.get("name", "")), str(key.get("user", "")),
                     " ".join(key.get("scopes") or []), human_time(parse_time(key.get("created_at")), now),
                     human_time(parse_time(key.get("last_used_at")), now),
                     expires.strftime("%Y-%m-%d %H:%M") if expires else "never", status])
    return render_table(rows, header=["ID", "NAME", "USER", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "STATUS"],
                        max_width=40)


def _listed(client: Client, path: str, field: str, name: str, value: str | None) -> list[dict[str, Any]]:
    """The ``field`` rows of ``GET path``, filtered by ``?name=value`` when a value is given."""
    answer = _call(client, "GET", f"{path}?{name}={value}" if value else path) or {}
    return answer.get(field) or []


def _revoke_all(client: Client, path: str, noun: str, ids: list[str]) -> int:
    """``DELETE path/ID`` for each id, saying so for each."""
    for ident in ids:
        _call(client, "DELETE", f"{path}/{ident}")
        sys.stdout.write(f"Revoked {noun} {ident}\n")
    return 0


def keys_list(client: Client, args: argparse.Namespace) -> int:
    """``corral keys list``."""
    sys.stdout.write(render_keys(_listed(client, "/api/keys", "keys", "user", args.user), now_utc()))
    return 0


def keys_revoke(client: Client, args: argparse.Namespace) -> int:
    """``corral keys revoke ID...``: effective at once."""
    return _revoke_all(client, "/api/keys", "key", args.ids)


# --- corral grants --------------------------------------------------------------------------------

def grants_add(client: Client, args: argparse.Namespace) -> int:
    """``corral grants add NS/MODEL USER``: let USER pull (or push) a repository you own."""
    body = {"repository": args.repository, "user": args.user, "actions": args.action or None}
    grant = _call(client, "POST", "/api/grants", {k: v for k, v in body.items() if v is not None})
    sys.stdout.write(f"Granted {','.join(grant['actions'])} on {grant['repository']} to {grant['user']} "
                     f"(grant {grant['id']})\n")
    return 0


def render_grants(grants: list[dict[str, Any]]) -> str:
    """The ``corral grants list`` table."""
    rows = [[str(g["id"]), g["repository"], g["user"], ",".join(g.get("actions") or [])] for g in grants]
    return render_table(rows, header=["ID", "REPOSITORY", "USER", "ACTIONS"], max_width=60)


def grants_list(client: Client, args: argparse.Namespace) -> int:
    """``corral grants list [NS/MODEL]``."""
    sys.stdout.write(render_grants(_listed(client, "/api/grants", "grants", "repository", args.repository)))
    return 0


def grants_revoke(client: Client, args: argparse.Namespace) -> int:
    """``corral grants revoke ID...``: effective for the next token."""
    return _revoke_all(client, "/api/grants", "grant", args.ids)


def _add_grant_commands(sub: argparse._SubParsersAction, command: Command) -> None:
    grants = command(sub, "grants", "Manage who may pull or push your registry repositories", None,
                     ("OLLAMA_HOST", "OLLAMA_API_KEY"))
    grants_sub = grants.add_subparsers(title="Commands", metavar="COMMAND", required=True)
    add = command(grants_sub, "add", "Grant a user access to a repository", grants_add, ("OLLAMA_API_KEY",))
    add.add_argument("repository", metavar="NS/MODEL")
    add.add_argument("user", metavar="USER")
    add.add_argument("--action", action="append", choices=("pull", "push"),
                     help="An action to grant (repeatable; default: pull)")
    listing = command(grants_sub, "list", "List grants", grants_list, ("OLLAMA_API_KEY",), aliases=["ls"])
    listing.add_argument("repository", metavar="NS/MODEL", nargs="?")
    revoke = command(grants_sub, "revoke", "Revoke grants", grants_revoke, ("OLLAMA_API_KEY",), aliases=["rm"])
    revoke.add_argument("ids", metavar="ID", nargs="+")


# --- corral signin / signout ---------------------------------------------------------------------

def signin(client: Client, args: argparse.Namespace) -> int:
    """``corral signin``: bind the device key (``--approve CODE`` approves someone else's)."""
    if args.approve:
        answer = _call(client, "POST", "/api/signin/approve",
                       {k: v for k, v in {"code": args.approve, "user": args.user, "scopes": args.scope or None}
                        .items() if v is not None})
        sys.stdout.write(f"Approved: device {answer.get('device')!r} is signed in as {answer.get('name')}\n")
        return 0
    key = load_device_key(create=True)
    answer = _call(client, "POST", "/api/signin", {"name": socket.gethostname()}, key=key)
    if answer.get("status") == "pending":
        sys.stdout.write(f"Your device key is {device_key_path()}.\n"
                         "To sign in, someone holding an API key with the admin scope approves this code:\n\n"
                         f"    corral signin --approve {answer['code']} [--user NAME]\n\n"
                         f"The code expires at {answer.get('expires_at')}. Waiting for approval...\n")
        sys.stdout.flush()
        answer = _wait_for_approval(client, key, args.timeout)
    sys.stdout.write(f"You are signed in as {answer.get('name')}.\n")
    return 0


def _wait_for_approval(client: Client, key: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        answer = _call(client, "POST", "/api/signin", {"name": socket.gethostname(), "poll": True}, key=key)
        if answer.get("status") == "signed_in":
            return answer
        if answer.get("status") != "pending":
            raise CliError("the signin code expired: run corral signin again")
    raise CliError("timed out waiting for approval: run corral signin again")


def signout(client: Client, _args: argparse.Namespace) -> int:
    """``corral signout``: unbind the device key (the key file stays)."""
    key = load_device_key()
    if key is None:
        raise CliError("not signed in: there is no device key")
    _call(client, "POST", "/api/signout", {}, key=key)
    sys.stdout.write("You have signed out of corral.\n")
    return 0


# --- registration ---------------------------------------------------------------------------------

Command = Callable[..., argparse.ArgumentParser]


def _scoped(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scope", action="append", choices=SCOPES,
                        help="A scope to grant (repeatable; default: every scope but admin)")


def add_auth_commands(sub: argparse._SubParsersAction, command: Command) -> None:
    """Register ``admin``, ``keys``, ``signin`` and ``signout`` on the root parser."""
    admin = command(sub, "admin", "Administer users on this server", None, ())
    admin_sub = admin.add_subparsers(title="Commands", metavar="COMMAND", required=True)
    boot = command(admin_sub, "bootstrap", "Create the first admin user and print its API key", admin_bootstrap, ())
    boot.add_argument("--name", default="admin", help='Name of the admin user (default "admin")')
    user = command(admin_sub, "create-user", "Add a user", admin_create_user, ())
    user.add_argument("name", metavar="NAME")
    user.add_argument("--admin", action="store_true", help="Make the user an admin")
    for parser in (boot, user):
        parser.set_defaults(local=True)

    keys = command(sub, "keys", "Manage API keys", None, ("OLLAMA_HOST", "OLLAMA_API_KEY"))
    keys_sub = keys.add_subparsers(title="Commands", metavar="COMMAND", required=True)
    create = command(keys_sub, "create", "Create an API key (shown once)", keys_create, ("OLLAMA_API_KEY",))
    create.add_argument("name", metavar="NAME")
    _scoped(create)
    create.add_argument("--expires", help="Lifetime (30d, 12h, 90m) or an RFC 3339 time")
    create.add_argument("--user", help="Owner of the key (admins only)")
    create.add_argument("--tokens-per-hour", type=int, metavar="N", help="Quota: tokens in and out per hour")
    create.add_argument("--requests-per-minute", type=int, metavar="N", help="Quota: inference requests per minute")
    listing = command(keys_sub, "list", "List API keys", keys_list, ("OLLAMA_API_KEY",), aliases=["ls"])
    listing.add_argument("--user", help="Only this user's keys (admins only)")
    revoke = command(keys_sub, "revoke", "Revoke API keys", keys_revoke, ("OLLAMA_API_KEY",), aliases=["rm"])
    revoke.add_argument("ids", metavar="ID", nargs="+")
    _add_grant_commands(sub, command)

    sign = command(sub, "signin", "Sign in to a corral server with this device's key", signin, ("OLLAMA_HOST",))
    sign.add_argument("--approve", metavar="CODE", help="Approve another device's signin code (admin scope)")
    sign.add_argument("--user", help="With --approve: the account to bind the device to (admins only)")
    _scoped(sign)
    sign.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for approval")
    command(sub, "signout", "Sign out this device", signout, ("OLLAMA_HOST",))
