"""The ``corral`` command, and ``corral serve``'s supervisor."""

import sys

# httpx imports its own command-line client (rich, click, pygments: a tenth of a second and a few MiB) whenever
# those are installed, which every ``corral`` command would pay for; corral never runs it, and httpx falls back to
# a stub when the import fails.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
