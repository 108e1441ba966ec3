"""``python -m corral_auth bootstrap|create-user NAME``: the admin commands for a container without the CLI."""

from __future__ import annotations

import argparse
import sys

from corral_common.errors import AppError

from corral_auth import admin
from corral_auth.settings import AuthSettings


def main(argv: list[str] | None = None) -> int:
    """Run one admin command against the configured database; the new key is the last line."""
    parser = argparse.ArgumentParser(prog="python -m corral_auth")
    sub = parser.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("bootstrap", help="create the first admin user and print its key")
    boot.add_argument("--name", default="admin")
    user = sub.add_parser("create-user", help="add a user")
    user.add_argument("name")
    user.add_argument("--admin", action="store_true")
    private = sub.add_parser("set-private", help="make a registry repository (ns/model) private, or public again")
    private.add_argument("repository")
    private.add_argument("--public", action="store_true")
    args = parser.parse_args(argv)
    settings = AuthSettings.from_env()
    try:
        if args.command == "bootstrap":
            issued = admin.bootstrap(settings, args.name)
            sys.stdout.write(f"Created admin user {args.name!r}; its API key (shown once):\n{issued.key}\n")
        elif args.command == "set-private":
            admin.set_private(settings, args.repository, not args.public)
            sys.stdout.write(f"{args.repository} is now {'public' if args.public else 'private'}\n")
        else:
            admin.create_user(settings, args.name, args.admin)
            sys.stdout.write(f"Created user {args.name!r}\n")
    except AppError as exc:
        sys.stderr.write(f"Error: {exc.message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
