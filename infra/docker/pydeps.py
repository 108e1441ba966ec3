"""Print a pyproject's third-party requirements, one per line, for a dependencies-only image layer.

    python3 pydeps.py services/registry/pyproject.toml convert    # the dependencies plus the convert extra

corral's own packages (corral-*) are left out: their sources are installed last, with --no-deps, so that a
change to the code rebuilds only that layer and never re-installs the dependencies.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += project.get("optional-dependencies", {})[extra]
    return [req for req in wanted if not re.match(r"corral[-_]", req.strip(), re.I)]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
