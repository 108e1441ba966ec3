"""moto's S3 server that keeps its buckets, objects and unfinished multipart uploads across restarts.

moto holds everything in memory; this server snapshots the S3 backends (pickled, written atomically) to
``DIR/moto-s3.pickle`` a moment after each change and when stopped (SIGTERM/SIGINT), and loads the
snapshot when it starts, so a restarted container serves what it stored before: a stand-in for MinIO in
tests on machines that cannot pull MinIO's image.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from pathlib import Path

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from werkzeug.serving import make_server

WRITES = {"PUT", "POST", "DELETE"}
SNAPSHOT_DELAY_S = 1.0


class Snapshots:
    """The pickled S3 state at ``path``: loaded once, written after changes and at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dirty = threading.Event()
        self.lock = threading.Lock()

    def load(self) -> None:
        """Put the last snapshot's buckets back into moto's backends."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            state = pickle.load(fh)
        for (account, partition), buckets in state.items():
            s3_backends[account][partition].buckets.update(buckets)
        print(f"s3: restored {sum(len(b) for b in state.values())} bucket(s) from {self.path}", flush=True)

    def save(self) -> None:
        """Write every backend's buckets to a temporary file, then move it over the snapshot."""
        with self.lock:
            state = {(account, partition): backend.buckets for account, partitions in list(s3_backends.items())
                     for partition, backend in list(partitions.items())}
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            with tmp.open("wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)

    def keep_saving(self) -> None:
        """Snapshot a moment after each burst of writes (a request still running is caught by the next one)."""
        while True:
            self.dirty.wait()
            threading.Event().wait(SNAPSHOT_DELAY_S)
            self.dirty.clear()
            try:
                self.save()
            except RuntimeError:  # a dict changed size while pickling: try again
                self.dirty.set()


def main(argv: list[str]) -> int:
    """``s3_server.py DIR PORT``: serve S3 on 0.0.0.0:PORT, state in DIR."""
    data, port = Path(argv[0]), int(argv[1])
    data.mkdir(parents=True, exist_ok=True)
    snapshots = Snapshots(data / "moto-s3.pickle")
    snapshots.load()
    moto = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD") in WRITES:
            snapshots.dirty.set()
        return moto(environ, start_response)

    server = make_server("0.0.0.0", port, app, threaded=True)
    threading.Thread(target=snapshots.keep_saving, daemon=True).start()

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"s3: moto S3 server on :{port}, state in {data}", flush=True)
    server.serve_forever()
    snapshots.save()
    print("s3: state saved, stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
