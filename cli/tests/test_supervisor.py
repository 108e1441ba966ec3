"""The embedded runtime's supervisor: which services wait for first use, and that a connection starts them."""

from __future__ import annotations

import socket
import sys
import threading
import time
from urllib.parse import urlparse

import pytest

from corral_cli import supervisor as supervisor_module
from corral_cli.supervisor import Child, ListenError, Supervisor, listening_socket, plan_children, port_of
from corral_common.testing.waiting import wait_for

ENV = {"OLLAMA_HOST": "127.0.0.1:0", "PATH": "/usr/bin:/bin"}
# A stand-in service: accept one connection on the inherited socket and greet it.
GREETER = "import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); c, _ = s.accept(); c.sendall(b'hello')"
SLEEPER = "import time; time.sleep(60)"


def _close(children: list[Child]) -> None:
    for child in children:
        if child.sock is not None:
            child.sock.close()


def test_rarely_used_services_wait_for_first_use_by_default() -> None:
    children = plan_children(dict(ENV))
    try:
        waiting = {c.name for c in children if c.waiting}
        assert waiting == {"auth", "websearch", "websearch-worker", "registry-worker"}
        by_name = {c.name: c for c in children}
        assert by_name["websearch"].wakes == ("websearch-worker",)
        for name in ("registry", "inference", "auth", "websearch"):
            child = by_name[name]
            assert urlparse(child.env[f"CORRAL_{name.upper()}_URL"]).port == port_of(child.sock)
            assert child.argv[-2:] == ["--fd", str(child.sock.fileno())]
    finally:
        _close(children)


def test_lazy_services_can_be_turned_off() -> None:
    children = plan_children({**ENV, "CORRAL_LAZY_SERVICES": "0"})
    try:
        assert not [c.name for c in children if c.waiting]
    finally:
        _close(children)




def test_first_connection_starts_the_service_and_the_ones_it_wakes() -> None:
    sock = listening_socket()
    lazy = Child("svc", [sys.executable, "-c", GREETER, str(sock.fileno())], {}, sock, waiting=True,
                 wakes=("svc-worker",))
    worker = Child("svc-worker", [sys.executable, "-c", SLEEPER], {}, waiting=True)
    eager = Child("eager", [sys.executable, "-c", SLEEPER], {})
    supervisor = Supervisor([lazy, worker, eager])
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: eager.process is not None, 15.0)
        time.sleep(0.6)  # a supervision round passes without a connection: nothing lazy starts
        assert lazy.process is None and worker.process is None
        with socket.create_connection(("127.0.0.1", port_of(sock)), timeout=15) as client:
            assert client.recv(5) == b"hello"  # the connection waited in the backlog until the service took it
        assert worker.process is not None and not lazy.waiting and not worker.waiting
    finally:
        supervisor.stop()
        runner.join(30)
    assert not runner.is_alive()
    assert all(c.process.poll() is not None for c in (lazy, worker, eager))


def test_embedded_registry_can_require_tokens_from_the_local_auth_service() -> None:
    env = {**ENV, "CORRAL_EMBEDDED_REGISTRY": "1", "CORRAL_REGISTRY_HOST": "127.0.0.1:0"}
    for extra, realm in (({}, None), ({"CORRAL_EMBEDDED_REGISTRY_AUTH": "1"}, "/token")):
        children = plan_children({**env, **extra})
        try:
            by_name = {c.name: c for c in children}
            registry_env = by_name["registry-v2"].env
            if realm is None:
                assert "CORRAL_REGISTRY_AUTH_REALM" not in registry_env
            else:
                assert registry_env["CORRAL_REGISTRY_AUTH_REALM"] == registry_env["CORRAL_AUTH_URL"] + realm
                assert urlparse(registry_env["CORRAL_AUTH_URL"]).port == port_of(by_name["auth"].sock)
        finally:
            _close(children)


def test_the_public_port_is_bound_by_the_supervisor_before_any_internal_one() -> None:
    children = plan_children(dict(ENV))
    try:
        by_name = {c.name: c for c in children}
        gateway = by_name["api"]
        assert gateway.argv[-2:] == ["--fd", str(gateway.sock.fileno())]
        internal = {port_of(c.sock) for c in children if c.sock is not None and c.name != "api"}
        assert port_of(gateway.sock) not in internal
        with pytest.raises(OSError):  # the port is taken from the moment the plan exists
            socket.create_server(("127.0.0.1", port_of(gateway.sock)))
    finally:
        _close(children)


def test_a_port_in_use_fails_serve_at_once_with_the_address(monkeypatch, capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = port_of(taken)
        with pytest.raises(ListenError, match=f"listen tcp 127.0.0.1:{port}: bind: address already in use"):
            plan_children({**ENV, "OLLAMA_HOST": f"127.0.0.1:{port}"})
        monkeypatch.setattr(supervisor_module, "current_env", lambda: {**ENV, "OLLAMA_HOST": f"127.0.0.1:{port}"})
        monkeypatch.setattr(supervisor_module, "configure_logging", lambda *_: None)  # not onto capsys's stream
        assert supervisor_module.serve() == 1
    assert capsys.readouterr().err == f"Error: listen tcp 127.0.0.1:{port}: bind: address already in use\n"


def test_the_registry_job_worker_is_a_process_unless_asked_to_run_inline() -> None:
    children = plan_children(dict(ENV))
    try:
        by_name = {c.name: c for c in children}
        assert by_name["registry-worker"].argv[1:7] == ["-P", "-m", "corral_cli.launch", "celery", "--quiet", "-A"]
        assert "CORRAL_REGISTRY_INLINE_WORKER" not in by_name["registry"].env
    finally:
        _close(children)
    children = plan_children({**ENV, "CORRAL_REGISTRY_INLINE_WORKER": "1"})
    try:
        by_name = {c.name: c for c in children}
        assert "registry-worker" not in by_name
        assert by_name["registry"].env["CORRAL_REGISTRY_INLINE_WORKER"] == "1"
    finally:
        _close(children)


def test_a_service_started_on_demand_waits_again_after_a_clean_exit_and_restarts_after_a_crash(tmp_path) -> None:
    queued = threading.Event()
    runs = tmp_path / "runs"
    # Each start appends a line; the first run ends cleanly (no more work), the second crashes.
    code = (f"import pathlib, sys; p = pathlib.Path({str(runs)!r}); n = len(p.read_text().splitlines()) "
            "if p.exists() else 0; p.open('a').write('run\\n'); sys.exit(0 if n == 0 else 3)")
    worker = Child("worker", [sys.executable, "-c", code], {}, waiting=True, wake_when=queued.is_set)
    supervisor = Supervisor([worker])
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()

    def started() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    try:
        time.sleep(0.6)
        assert started() == 0  # nothing queued: not started
        queued.set()
        assert wait_for(lambda: started() == 1, 15.0)
        queued.clear()  # the work is taken: it ends cleanly and waits for the next
        assert wait_for(lambda: worker.waiting and worker.process is None, 15.0)
        time.sleep(1.2)
        assert started() == 1
        queued.set()
        assert wait_for(lambda: started() >= 3, 15.0)  # the second run crashes (3): restarted without waiting to be woken
        queued.clear()
    finally:
        supervisor.stop()
        runner.join(30)
