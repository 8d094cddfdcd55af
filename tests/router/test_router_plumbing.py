"""Health, reflection, and ``python -m quartet.services.router`` refusing a bad agents file."""

from __future__ import annotations

import asyncio
import os
import sys

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from quartet.services.router.server import SERVICE_NAME
from quartet.services.router.settings import REPO_ROOT


async def test_health_and_reflection(router_server):
    # Channels connect lazily, so neither the engine nor memory is needed here.
    async with router_server("127.0.0.1:1", "127.0.0.1:1") as router:
        health = health_pb2_grpc.HealthStub(router.channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(router.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [response] = [r async for r in reflection.ServerReflectionInfo(iter([request]))]
        assert SERVICE_NAME in {s.name for s in response.list_services_response.service}


async def test_bad_agents_file_stops_startup(tmp_path):
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents:\n  - {name: evil, kind: topic, prompt: ../etc/passwd}\n")
    env = {**os.environ, "AGENTS_FILE": str(agents), "ROUTER_LISTEN": "127.0.0.1:0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quartet.services.router", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "prompt id '../etc/passwd' is not valid" in stderr.decode()


async def test_grammar_that_does_not_compile_stops_startup(tmp_path):
    (tmp_path / "grammars").mkdir()
    (tmp_path / "grammars" / "broken.gbnf").write_text('root ::= "{" value "}"\n')
    agents = tmp_path / "agents.yaml"
    agents.write_text(
        "agents:\n  - {name: r, kind: router, prompt: router, schema: router_decision, grammar: broken}\n"
    )
    env = {**os.environ, "AGENTS_FILE": str(agents), "GRAMMARS_DIR": str(tmp_path / "grammars"), "ROUTER_LISTEN": "127.0.0.1:0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quartet.services.router", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "grammar 'broken'" in stderr.decode() and "Rule 'value' not found" in stderr.decode()
