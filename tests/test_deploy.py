"""Deployment files: compose files validate with the Compose tool, ClickHouse configs parse,
and the services agree with the settings names."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from dnma.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "deploy" / "cluster" / "compose.yml"]
SECRETS = {
    "DNMA_CH_PASSWORD": "x",
    "DNMA_CH_HTTP_PASSWORD": "y",
    "DNMA_UID_SECRET": "z",
    "DNMA_SUPER_USER_TOKEN": "t",
}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates(path: Path) -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose (Debian package) is installed by `make test`"
    env = dict(os.environ, **SECRETS)
    res = subprocess.run([tool, "-f", str(path), "config", "-q"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_refuses_missing_secrets(path: Path, secret: str) -> None:
    """Each secret is mandatory on its own: without it (the others set), the file is refused with
    its `${...:?set NAME}` message, not for some other reason."""
    tool = shutil.which("docker-compose")
    assert tool
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | {k: v for k, v in SECRETS.items() if k != secret}
    res = subprocess.run([tool, "-f", str(path), "config", "-q"], env=env, capture_output=True, text=True)
    # The message quotes the service's other `:?set NAME` references: only its end names the missing one.
    assert res.returncode == 1 and "Missing mandatory value" in res.stderr, res.stderr
    assert res.stderr.strip().endswith(f": set {secret}"), res.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_env_names_are_real_settings(path: Path) -> None:
    fields = {f"DNMA_{name.upper()}" for name in Settings.model_fields}
    doc = yaml.safe_load(path.read_text())
    for name, service in doc["services"].items():
        for key in (service.get("environment") or {}):
            if key.startswith("DNMA_"):
                assert key in fields, f"{path.name}:{name}: {key} is not a setting"


def test_cluster_xml_configs_parse() -> None:
    cluster = ET.parse(REPO / "deploy" / "cluster" / "config" / "cluster.xml").getroot()
    shards = cluster.findall("./remote_servers/dnma_cluster/shard")
    assert len(shards) == 2 and all(len(s.findall("replica")) == 2 for s in shards)
    assert len(cluster.findall("./zookeeper/node")) == 3
    keeper = ET.parse(REPO / "deploy" / "cluster" / "config" / "keeper.xml").getroot()
    assert len(keeper.findall("./keeper_server/raft_configuration/server")) == 3
    ET.parse(REPO / "deploy" / "clickhouse" / "users.xml")


def test_the_image_copies_every_package_it_installs() -> None:
    """The Dockerfile's `pip install -e .` needs the folder of every package pyproject.toml lists
    (the command line imports every room), and installs the locked versions."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    dirs = project["package-dir"]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    copied = {source.rstrip("/") for line in dockerfile.splitlines()
              if line.startswith("COPY ") and not line.startswith("COPY --from") for source in line.split()[1:-1]}
    for package in project["packages"]:
        top = package.split(".")[0]
        folder = dirs.get(top, top) if dirs.get(top, ".") != "." else top
        assert any(folder == c or folder.startswith(c + "/") for c in copied), (package, folder, sorted(copied))
    assert "-c constraints.txt" in dockerfile and "constraints.txt" in copied
