"""Helpers for the router tests: the agents they run (the router server itself is tests/servers.py's)."""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.router.agents import AgentRegistry
from quartet.services.router.config import parse_agents
from quartet.services.router.library import Library
from quartet.services.router.settings import REPO_ROOT

REPO_LIBRARY = Library(REPO_ROOT / "prompts", REPO_ROOT / "schemas", REPO_ROOT / "grammars")

# Test-only agents beside the shipped ones: a router cut off after 3 tokens (its output can
# never be a whole object), a topic agent without memory, one that remembers by topic, quick
# greedy agents for the summary and retrieval policies, and a router constrained by its JSON
# schema rather than a grammar.
TEST_AGENTS = [
    {"name": "router-cut", "kind": "router", "prompt": "router", "schema": "router_decision",
     "output_prefix": '{"Operation": "', "generation": {"max_tokens": 3}},
    {"name": "oneshot", "kind": "topic", "prompt": "chat", "generation": {"max_tokens": 8, "temperature": 0}},
    {"name": "topical", "kind": "topic", "prompt": "chat", "memory": {"policy": "topic_window", "k": 4},
     "generation": {"max_tokens": 6, "temperature": 0}},
    {"name": "summarized", "kind": "topic", "prompt": "chat",
     "memory": {"policy": "topic_summary", "k": 2, "summary": {"after_turns": 2, "max_tokens": 24}},
     "generation": {"max_tokens": 6, "temperature": 0}},
    {"name": "recalling", "kind": "topic", "prompt": "chat", "memory": {"policy": "retrieval", "k": 2},
     "generation": {"max_tokens": 6, "temperature": 0}},
]


def make_registry() -> AgentRegistry:
    """The repository's agents.yaml plus TEST_AGENTS."""
    data = yaml.safe_load((REPO_ROOT / "agents.yaml").read_text())
    # The shipped router, constrained by its JSON schema instead of its grammar.
    router = next(a for a in data["agents"] if a["name"] == "router")
    schema_only = {k: v for k, v in router.items() if k != "grammar"} | {"name": "router-schema"}
    data["agents"].extend([*TEST_AGENTS, schema_only])
    return parse_agents(data, REPO_LIBRARY, source="agents.yaml + test agents")


@dataclass
class Memory:
    address: str
    stub: memory_pb2_grpc.MemoryServiceStub
