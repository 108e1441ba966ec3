"""How llama.cpp's OpenMP threads wait between graph computations.

The llama.cpp CPU backend runs each graph on an OpenMP team. By default libgomp keeps a finished team
spinning for a while, ready for the next graph; llama-server's loop does almost nothing between graphs, but
ours samples, relays tokens and serves HTTP in Python there, on the same cores. A spinning thread takes the
core that work needs, and when other processes compete for the cores too, a spinning team waits for a
descheduled member: on a 2-core machine with other work running, 4 streams went from 12-16 to 56-75
tokens/s with passive waiting (threads sleep at once and are woken by the next graph), at a quarter of
the CPU time. libgomp reads OMP_WAIT_POLICY once, when it is loaded, so this runs before llama_cpp is
imported; an OMP_WAIT_POLICY the user set is left alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_wait(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless it is set; the policy in force."""
    return environ.setdefault(WAIT_POLICY, "PASSIVE")
