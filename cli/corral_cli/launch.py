"""Serve one internal service's app on a listening socket that ``corral serve`` bound and handed down.

The supervisor binds every internal port itself (no gap between choosing a free port and a child
binding it), so it can also start a rarely used service only when its first connection arrives:
that connection waits in the socket's backlog until the service accepts it.

    python -m corral_cli.launch corral_auth.main --fd 5
"""

from __future__ import annotations

import argparse
import socket

import uvicorn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m corral_cli.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", help="the service's module with a create_app() factory, e.g. corral_auth.main")
    parser.add_argument("--fd", type=int, required=True, help="inherited file descriptor of a listening TCP socket")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the service's app until SIGTERM/SIGINT, accepting on the inherited socket."""
    args = parse_args(argv)
    sock = socket.socket(fileno=args.fd)  # family and type are read from the descriptor itself
    # log_config=None: uvicorn's records go through the service's own log setup (JSON lines stay JSON)
    config = uvicorn.Config(f"{args.module}:create_app", factory=True, access_log=False, log_level="warning",
                            log_config=None, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
