"""Blob transfer (issue 17 item 7): push and pull of one big blob to ``corral registry`` on loopback, against ``cp``.

    .venv/bin/python bench/blob_transfer.py                 # 2 GiB, the issue's size
    .venv/bin/python bench/blob_transfer.py --size 512M     # a quicker run

Everything lives in one scratch folder (``--dir``, default a new folder under the system temp dir, deleted at
the end unless ``--keep``), so ``cp``, the registry's storage and both model stores share one disk. Steps:

1. a model whose weights are ``--size`` bytes of random data (not sparse) in store ``a``;
2. ``cp`` of that blob on the same disk, timed (and ``cp`` followed by ``sync`` of the copy, for reference:
   corral fsyncs what it stores);
3. ``corral registry`` (the real command) on a free loopback port;
4. push a→registry, then pull registry→``b``, each by a client process of its own running corral's transfer code
   (what the registry worker runs for ``/api/push`` and ``/api/pull``), timed inside the client; the RSS of the
   client and of the registry's process tree is sampled (psutil, every 20 ms) and its growth over the value just
   before the transfer is reported;
5. resume: a pull into ``c`` is killed (SIGKILL) once about half the blob is on disk, then run again; the bytes
   the registry served to the second run (its ``corral_registry_blob_bytes_total{direction="out"}``) are compared
   with what the first run had not finished.

Targets: push and pull ≥ 0.7x ``cp`` throughput, RSS growth ≤ 64 MiB for server and client, the resumed pull
reads only the missing part. Each line says met or missed, with the ceiling the machine sets: a verified, durable
transfer hashes every byte on one core and has it on disk before it answers, so it goes no faster than the slower of
a read + sha256 of the file (timed) and ``cp`` + ``sync``. The page cache is not dropped (that needs root): the
source is fsynced before every timed step, so no step pays for an earlier one's writeback. Before ``cp``, push and
pull, a scratch file of the blob's size is written and deleted (``recycle_memory``), so each writes into memory the
kernel has just freed, never into memory the VM has not touched yet (which costs seconds per GiB the first time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from corral_common.fsio import fsync_path  # flush dirty pages, so the next timed step does not pay for them

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
RSS_LIMIT_MIB = 64
RATIO_TARGET = 0.7
NAME = "bench/blob:latest"


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``100k`` or plain bytes (binary units)."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)(?:i?[bB])?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[match.group(2).lower()]


# --- the client: one push or pull in a process of its own --------------------------------------------------------
def client_main(direction: str, store_root: Path, name: str) -> int:
    """Import everything, say ready, wait for ``go`` on stdin, transfer, print the seconds it took as JSON."""
    from corral_common.internal import TransferRequest
    from corral_common.jobs import JobReporter
    from corral_registry.pull import pull_model
    from corral_registry.push import push_model
    from corral_registry.settings import TransferSettings
    from corral_registry.store import ModelStore
    from corral_registry.transfer.client import RegistryClient

    settings = TransferSettings.from_env(os.environ)
    store = ModelStore(store_root)
    client = RegistryClient(settings, store_root.parent / "home")
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.perf_counter(), time.process_time()
    run = push_model if direction == "push" else pull_model
    run(store, client, settings, TransferRequest(model=name, insecure=True), JobReporter())
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}), flush=True)
    client.close()
    return 0


# --- the scratch data --------------------------------------------------------------------------------------------
def make_model(store_root: Path, name: str, size: int) -> Path:
    """A model in a fresh store whose weights are ``size`` random bytes; returns the weights blob's path."""
    from corral_common.digest import Digest
    from corral_common.names import ModelName
    from corral_registry import media_types
    from corral_registry.manifest import Layer, Manifest
    from corral_registry.store import ModelStore

    store = ModelStore(store_root)
    tmp, hasher = store_root / "blobs" / ".bench-weights.tmp", hashlib.sha256()
    with open(tmp, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(4 * MIB, left))
            hasher.update(block)
            handle.write(block)
            left -= len(block)
        handle.flush()
        os.fsync(handle.fileno())
    digest = Digest(hasher.hexdigest())
    os.replace(tmp, store.blob_path(digest))
    config, _ = store.put_bytes(b'{"model_format":"gguf","model_family":"llama"}')
    manifest = Manifest(Layer(media_types.CONFIG, config, store.blob_path(config).stat().st_size),
                        (Layer(media_types.MODEL, digest, size),))
    store.put_manifest(ModelName.parse(name), manifest)
    return store.blob_path(digest)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def recycle_memory(work: Path, size: int) -> None:
    """Write ``size`` bytes to a scratch file and delete it, so the next timed step writes into page-cache memory
    the kernel has just freed. On a VM, memory the guest has never touched costs several seconds of system CPU per
    GiB the first time it is written (measured here: about 3 s/GiB); without this, whichever of ``cp``, push or pull
    happened to write into such memory was the slow one, and the ratios measured the VM, not corral."""
    scratch, chunk = work / "recycle", bytes(8 * MIB)
    with scratch.open("wb") as out:
        for _ in range(0, size, len(chunk)):
            out.write(chunk)
    fsync_path(scratch)
    scratch.unlink()


def time_cp(source: Path, work: Path, sync: bool) -> tuple[float, float]:
    """Seconds and CPU seconds for ``cp source copy`` (then ``sync copy`` when asked); the copy is deleted after."""
    copy = work / "cp-copy"
    recycle_memory(work, source.stat().st_size)
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(["cp", str(source), str(copy)], check=True)
    if sync:
        subprocess.run(["sync", str(copy)], check=True)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    copy.unlink()
    fsync_path(work)
    return seconds, cpu


def time_sha256(source: Path) -> float:
    """Seconds to read the file (from the page cache) and sha256 it on one core: every verified transfer hashes each
    byte once on one side (the registry for a push, the client for a pull), in offset order, so no faster than this."""
    block, sha = bytearray(4 * MIB), hashlib.sha256()
    view = memoryview(block)
    started = time.perf_counter()
    with open(source, "rb", buffering=0) as handle:
        while got := handle.readinto(block):
            sha.update(view[:got])
    return time.perf_counter() - started


def ceiling(cp: float, cp_sync: float, sha: float) -> float:
    """The best throughput ratio to ``cp`` a verified, durable transfer can reach here: it must hash every byte and
    have it on disk before it answers, so it is bounded by the slower of the hash and ``cp`` + ``sync``."""
    return cp / max(cp_sync, sha)


# --- the registry and the clients ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(work: Path, port: int) -> subprocess.Popen:
    """``corral registry`` on 127.0.0.1:port, storing under work/registry; waits until /v2/ answers."""
    env = dict(os.environ, CORRAL_REGISTRY_HOST=f"127.0.0.1:{port}", CORRAL_REGISTRY_DATA=str(work / "registry"),
               CORRAL_HOME=str(work / "reghome"), CORRAL_METRICS="1")
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "corral"), "registry"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"corral registry exited ({proc.returncode}); log: {work / 'registry.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit("corral registry did not start within 180 s")


def served_bytes(port: int) -> int:
    """The registry's blob bytes sent so far (its metrics counter)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    match = re.search(r'^corral_registry_blob_bytes_total\{direction="out"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else 0


def settled_served_bytes(port: int, quiet: float = 1.5, limit: float = 60) -> int:
    """The served-bytes counter once it has not moved for ``quiet`` seconds."""
    last, since, deadline = served_bytes(port), time.monotonic(), time.monotonic() + limit
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        now = served_bytes(port)
        if now != last:
            last, since = now, time.monotonic()
    return last


def tree_cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process and its children so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and its children, bytes (0 once gone)."""
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        return 0
    return total


class Sampler:
    """The peak RSS of some process trees, sampled every 20 ms in a thread."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        self.procs = procs
        self.base = {k: tree_rss(p) for k, p in procs.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for key, proc in self.procs.items():
                self.peak[key] = max(self.peak[key], tree_rss(proc))

    def stop(self) -> dict[str, float]:
        """Growth over the starting RSS per tree, MiB."""
        self._stop.set()
        self._thread.join()
        return {k: (self.peak[k] - self.base[k]) / MIB for k in self.procs}


def spawn_client(direction: str, store: Path, name: str) -> subprocess.Popen:
    """A client process, imported and waiting for ``go``."""
    proc = subprocess.Popen([sys.executable, __file__, "--client", direction, "--store", str(store), "--name", name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"the {direction} client did not start")
    return proc


def transfer(direction: str, store: Path, name: str, server: subprocess.Popen) -> dict[str, float]:
    """One timed push or pull with RSS sampling of client and server."""
    client = spawn_client(direction, store, name)
    server_proc = psutil.Process(server.pid)
    sampler = Sampler({"client": psutil.Process(client.pid), "server": server_proc})
    server_cpu = tree_cpu(server_proc)
    client.stdin.write("go\n")
    client.stdin.flush()
    out, _ = client.communicate(timeout=3600)
    growth = sampler.stop()
    if client.returncode != 0:
        raise SystemExit(f"{direction} failed (exit {client.returncode})")
    timing = json.loads(out.strip().splitlines()[-1])
    return {"seconds": timing["seconds"], "client_cpu": timing["cpu"], "server_cpu": tree_cpu(server_proc) - server_cpu,
            **growth}


def saved_progress(store: Path) -> int:
    """Bytes an interrupted pull recorded as done in its ``-partial-<N>`` state files."""
    done = 0
    for path in (store / "blobs").glob("sha256-*-partial-[0-9]*"):
        try:
            done += json.loads(path.read_text())["Completed"]
        except (OSError, ValueError, KeyError):
            pass
    return done


def resume(store: Path, name: str, size: int, others: dict[str, int], port: int,
           server: subprocess.Popen) -> dict[str, float]:
    """Kill a pull at about half, pull again; what the second run was served against what was missing (the
    unfinished part of the weights, and ``others``, the model's small blobs, unless the first run got them)."""
    client = spawn_client("pull", store, name)
    client.stdin.write("go\n")
    client.stdin.flush()
    deadline = time.monotonic() + 3600
    while saved_progress(store) < size // 2 and client.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if client.poll() is not None:
        raise SystemExit("the pull finished before half of it could be interrupted: use a bigger --size "
                         "(or --no-resume)")
    client.kill()
    client.wait()
    saved = saved_progress(store)
    small = sum(n for blob, n in others.items() if not (store / "blobs" / blob).exists())
    before = settled_served_bytes(port)  # the killed client's answers are counted when the registry ends them
    second = transfer("pull", store, name, server)
    time.sleep(0.2)  # the counter is added to when the response ends
    return {"saved": saved, "missing": size - saved + small, "served": served_bytes(port) - before, **second}


# --- the report ----------------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(size: int, cps: tuple[tuple[float, float], tuple[float, float]], sha: float, push: dict, pull: dict,
           resumed: dict | None) -> list[str]:
    """The table and the met/missed lines."""
    rate = lambda seconds: size / seconds / MIB  # noqa: E731
    (cp, cp_cpu), (cp_sync, cp_sync_cpu) = cps
    lines = [f"blob {size / MIB:.0f} MiB, load average {os.getloadavg()[0]:.1f}",
             f"{'step':<14}{'seconds':>9}{'MiB/s':>9}{'x cp':>7}{'client +MiB':>13}{'server +MiB':>13}"
             f"{'client CPU s':>14}{'server CPU s':>14}",
             f"{'cp':<14}{cp:>9.2f}{rate(cp):>9.0f}{1:>7.2f}{'':>26}{cp_cpu:>14.2f}",
             f"{'cp + sync':<14}{cp_sync:>9.2f}{rate(cp_sync):>9.0f}{cp / cp_sync:>7.2f}{'':>26}{cp_sync_cpu:>14.2f}",
             f"{'sha256 (read)':<14}{sha:>9.2f}{rate(sha):>9.0f}{cp / sha:>7.2f}"]
    for label, row in (("push", push), ("pull", pull)) + ((("resumed pull", resumed),) if resumed else ()):
        lines.append(f"{label:<14}{row['seconds']:>9.2f}{rate(row['seconds']):>9.0f}{cp / row['seconds']:>7.2f}"
                     f"{row['client']:>13.1f}{row['server']:>13.1f}{row['client_cpu']:>14.2f}{row['server_cpu']:>14.2f}")
    lines += ["", f"ceiling here for a verified, durable transfer (the slower of sha256 and cp + sync): "
                  f"{ceiling(cp, cp_sync, sha):.2f} x cp", ""]
    for check in targets(size, cp, push, pull, resumed, ceiling(cp, cp_sync, sha)):
        lines.append(f"{check['target']}: {check['detail']}: {verdict(check['met'])}")
    return lines


def targets(size: int, cp: float, push: dict, pull: dict, resumed: dict | None, most: float) -> list[dict]:
    """Issue 17 item 7: throughput against cp (``most``: the ceiling this machine sets, see ``ceiling``), RSS growth,
    and a resumed pull reading only what was missing."""
    found = []
    for label, row in (("push", push), ("pull", pull)):
        ratio = cp / row["seconds"]
        found.append({"item": 7, "target": f"{label} throughput >= {RATIO_TARGET} x cp", "met": ratio >= RATIO_TARGET,
                      "ratio": ratio, "detail": f"{size / row['seconds'] / MIB:.0f} vs {size / cp / MIB:.0f} MiB/s, "
                                                f"{ratio:.2f} x; at most {most:.2f} x here (sha256, cp + sync)"})
        worst = max(row["client"], row["server"])
        found.append({"item": 7, "target": f"{label} RSS growth <= {RSS_LIMIT_MIB} MiB (client and server)",
                      "met": worst <= RSS_LIMIT_MIB, "ratio": worst / RSS_LIMIT_MIB,
                      "detail": f"client {row['client']:.1f} MiB, server {row['server']:.1f} MiB"})
    if resumed:
        extra = resumed["served"] - resumed["missing"]
        found.append({"item": 7, "target": "an interrupted pull resumes without re-reading the finished part",
                      "met": extra <= 0, "ratio": resumed["served"] / resumed["missing"] if resumed["missing"] else None,
                      "detail": f"{resumed['saved'] / MIB:.1f} MiB were done, the registry then served "
                                f"{resumed['served'] / MIB:.1f} MiB for the {resumed['missing'] / MIB:.1f} MiB missing "
                                f"({extra} bytes more)"})
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"), help="blob size (2G, 512M, ...)")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a new one in the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--no-resume", action="store_true", help="skip the interrupted-pull step")
    parser.add_argument("--json", type=Path, help="also write the targets and figures to this JSON file")
    parser.add_argument("--client", choices=("push", "pull"), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args.client, args.store, args.name)
    work = Path(tempfile.mkdtemp(prefix="corral-blob-bench-", dir=args.dir))
    # source, the cp copy (or the scratch file that recycles memory), upload + stored blob at the registry, a pulled copy
    needed = args.size * 5 + 256 * MIB
    if shutil.disk_usage(work).free < needed:
        shutil.rmtree(work)
        raise SystemExit(f"need {needed / MIB:.0f} MiB free under {work.parent}")
    server = None
    try:
        port = free_port()
        name = f"127.0.0.1:{port}/{NAME}"
        print(f"scratch {work}; writing {args.size / MIB:.0f} MiB of random data", flush=True)
        source = make_model(work / "a", name, args.size)
        cps = time_cp(source, work, False), time_cp(source, work, True)
        sha = time_sha256(source)
        server = start_registry(work, port)
        recycle_memory(work, args.size)
        push = transfer("push", work / "a", name, server)
        fsync_path(source)
        recycle_memory(work, args.size)
        pull = transfer("pull", work / "b", name, server)
        shutil.rmtree(work / "b")
        others = {p.name: p.stat().st_size for p in source.parent.glob("sha256-*") if p != source}
        resumed = None if args.no_resume else resume(work / "c", name, args.size, others, port, server)
        print("\n".join(report(args.size, cps, sha, push, pull, resumed)))
        if args.json:
            args.json.write_text(json.dumps({"size": args.size, "cp_s": cps[0][0], "cp_sync_s": cps[1][0],
                                             "sha256_s": sha, "ceiling_x_cp": ceiling(cps[0][0], cps[1][0], sha),
                                             "push": push, "pull": pull, "resumed": resumed,
                                             "targets": targets(args.size, cps[0][0], push, pull, resumed,
                                                                ceiling(cps[0][0], cps[1][0], sha))},
                                            indent=1) + "\n")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
