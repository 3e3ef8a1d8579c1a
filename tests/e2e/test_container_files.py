"""The container files (issue 18): the Dockerfile (two stages, non-root, /data volume, a healthcheck
on /healthz), the article's compose file with jsedge in it, and the config the container runs. Where a
Docker daemon answers, the image is built and run; elsewhere the files are checked and the config
and the healthcheck command run against a local jsedge."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, ServerProcess, free_port

pytestmark = pytest.mark.timeout(120)

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
CONF = REPO_ROOT / "docker" / "nats.conf"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_in_two_stages_and_runs_unprivileged() -> None:
    steps = _instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build"), stages
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    words = dict(final)
    assert words["USER"] not in ("root", "0")
    assert json.loads(words["VOLUME"]) == ["/data"]
    assert words["EXPOSE"].split() == ["4222", "8222", "6222"]
    assert json.loads(words["ENTRYPOINT"]) == ["jsedge"]
    assert json.loads(words["CMD"]) == ["-c", "/etc/nats/nats.conf"]
    assert "/healthz" in words["HEALTHCHECK"]
    assert not any(word == "RUN" and "gcc" in args for word, args in final), "no compiler in the runtime image"
    for word, args in steps:  # everything it copies from the build context exists
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (REPO_ROOT / source).exists(), source


def test_compose_file_is_the_articles_with_jsedge() -> None:
    yaml = pytest.importorskip("yaml")
    document = yaml.safe_load(COMPOSE.read_text())
    service = document["services"]["nats"]
    assert service["build"] == "."
    assert service["ports"] == ["4222:4222", "8222:8222", "6222:6222"]
    assert service["command"] == ["-c", "/etc/nats/nats.conf"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    assert mounts["/data"] in document.get("volumes", {}) or mounts["/data"].startswith("./")
    assert (REPO_ROOT / mounts["/etc/nats/nats.conf"]).resolve() == CONF.resolve()


def test_the_containers_config_and_healthcheck_work(tmp_path: Path) -> None:
    """docker/nats.conf is accepted by `-t` on both servers; jsedge runs it (the store and the
    monitoring port moved to this machine's free ones) and the image's healthcheck command passes."""
    for argv in (["nats-server"], [sys.executable, "-m", "jsedge"]):
        if argv[0] == "nats-server" and shutil.which("nats-server") is None:
            continue
        checked = subprocess.run([*argv, "-t", "-c", str(CONF)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    http = free_port()
    local = tmp_path / "nats.conf"
    local.write_text(
        CONF.read_text().replace("store_dir: /data", f'store_dir: "{tmp_path / "data"}"').replace("8222", str(http))
    )
    healthcheck = dict(_instructions()[::-1])["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    command = [sys.executable, *command[1:]]
    command[-1] = command[-1].replace("8222", str(http))
    with ServerProcess("jsedge", config=local.read_text()):
        deadline = time.monotonic() + 20
        while subprocess.run(command, capture_output=True, timeout=10).returncode != 0:
            assert time.monotonic() < deadline, "the healthcheck never passed"
            time.sleep(0.2)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.timeout(900)
@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon here: the files are checked above")
def test_image_builds_and_becomes_healthy() -> None:
    tag = "jsedge-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(REPO_ROOT)], check=True, capture_output=True, timeout=800)
    name = f"jsedge-test-{free_port()}"
    subprocess.run(["docker", "run", "-d", "--name", name, tag], check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            state = subprocess.run(
                shlex.split(f"docker inspect -f '{{{{.State.Health.Status}}}}' {name}"),
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            if state == "healthy":
                break
            assert time.monotonic() < deadline, f"container {state}"
            time.sleep(1)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
