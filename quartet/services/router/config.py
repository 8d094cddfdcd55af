"""Load agents.yaml: parse it strictly, resolve prompt and schema ids, fail with clear errors.

A typo in the file (an unknown key, a misspelt policy) is an error at startup,
not a silently different agent at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quartet.services.router.agents import (
    Agent,
    AgentKind,
    AgentRegistry,
    Example,
    Generation,
    MemoryPolicy,
    Priority,
    Summarizing,
)
from quartet.services.router.library import Library, LibraryError
from quartet.services.router.prompting import example_json

TOPIC_TEMPERATURE = 0.7


class ConfigError(ValueError):
    """The agents file is wrong; the message names the file, the agent and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _GenerationSpec(_Strict):
    max_tokens: int = Field(256, ge=1, le=32768)
    # Unset: 0 (greedy) for router agents, TOPIC_TEMPERATURE for topic agents.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class _SummarySpec(_Strict):
    prompt: str = "summarize"
    after_turns: int = Field(4, ge=1, le=1000)
    max_tokens: int = Field(96, ge=8, le=4096)


class _MemorySpec(_Strict):
    policy: Literal["none", "session_window", "topic_window", "topic_summary", "retrieval"] = "none"
    k: int = Field(8, ge=1, le=1000)
    summary: _SummarySpec | None = None


class _ExampleSpec(_Strict):
    input: str = Field(min_length=1)
    output: dict[str, Any]


class _AgentSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    kind: Literal["router", "topic"]
    description: str = ""
    prompt: str
    schema_: str | None = Field(None, alias="schema")
    grammar: str | None = None
    examples: list[_ExampleSpec] = []
    output_prefix: str = ""
    memory: _MemorySpec | None = None
    priority: Literal["default", "topic", "router"] | None = None
    generation: _GenerationSpec = _GenerationSpec()


class _FileSpec(_Strict):
    agents: list[_AgentSpec] = Field(min_length=1)


def _pydantic_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _router_agent(spec: _AgentSpec, library: Library, base: dict[str, Any]) -> Agent:
    if spec.schema_ is None:
        raise ConfigError("a router agent needs 'schema' (an id in the schemas folder)")
    if spec.memory is not None:
        raise ConfigError("a router agent is stateless; remove 'memory'")
    if spec.generation.temperature not in (None, 0.0):
        raise ConfigError("a router agent decodes greedily; set generation.temperature to 0 or leave it out")
    schema = library.schema(spec.schema_)
    validator = Draft202012Validator(schema)
    for index, example in enumerate(spec.examples):
        problem = next(iter(validator.iter_errors(example.output)), None)
        if problem is not None:
            raise ConfigError(f"examples[{index}].output does not fit schema {spec.schema_!r}: {problem.message}")
        if not example_json(example.output).startswith(spec.output_prefix):
            raise ConfigError(
                f"examples[{index}].output, shown as {example_json(example.output)}, "
                f"does not begin with output_prefix {spec.output_prefix!r}"
            )
    examples = tuple(Example(input=e.input, output=e.output) for e in spec.examples)
    grammar = library.grammar(spec.grammar) if spec.grammar is not None else ""
    return Agent(
        **base,
        schema_id=spec.schema_,
        schema=schema,
        grammar_id=spec.grammar or "",
        grammar=grammar,
        examples=examples,
        output_prefix=spec.output_prefix,
    )


def _topic_agent(spec: _AgentSpec, library: Library, base: dict[str, Any]) -> Agent:
    if spec.schema_ is not None or spec.grammar is not None or spec.examples or spec.output_prefix:
        raise ConfigError(
            "'schema', 'grammar', 'examples' and 'output_prefix' belong to router agents; remove them from a topic agent"
        )
    memory = spec.memory or _MemorySpec()
    policy = MemoryPolicy(memory.policy)
    summarizing = None
    if policy is MemoryPolicy.TOPIC_SUMMARY:
        summary = memory.summary or _SummarySpec()
        summarizing = Summarizing(
            prompt=library.prompt(summary.prompt), after_turns=summary.after_turns, max_tokens=summary.max_tokens
        )
    elif memory.summary is not None:
        raise ConfigError(f"memory.summary applies to the topic_summary policy, not {policy.value}; remove it")
    return Agent(**base, memory_policy=policy, memory_k=memory.k, summarizing=summarizing)


def _temperature(value: float | None, kind: AgentKind) -> float:
    if value is not None:
        return value
    return 0.0 if kind is AgentKind.ROUTER else TOPIC_TEMPERATURE


def _agent(spec: _AgentSpec, library: Library) -> Agent:
    kind = AgentKind(spec.kind)
    default_priority = Priority.ROUTER if kind is AgentKind.ROUTER else Priority.TOPIC
    base: dict[str, Any] = dict(
        name=spec.name,
        kind=kind,
        description=spec.description,
        prompt_id=spec.prompt,
        system_prompt=library.prompt(spec.prompt),
        priority=Priority(spec.priority) if spec.priority else default_priority,
        generation=Generation(
            max_tokens=spec.generation.max_tokens,
            temperature=_temperature(spec.generation.temperature, kind),
            top_p=spec.generation.top_p,
        ),
    )
    return _router_agent(spec, library, base) if kind is AgentKind.ROUTER else _topic_agent(spec, library, base)


def parse_agents(data: object, library: Library, source: str = "<agents>") -> AgentRegistry:
    """Validate parsed YAML and resolve every id; raise ConfigError naming what is wrong."""
    try:
        spec = _FileSpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_pydantic_message(error)}") from None
    agents: list[Agent] = []
    seen: set[str] = set()
    for index, agent_spec in enumerate(spec.agents):
        where = f"{source}: agents[{index}] ({agent_spec.name!r})"
        if agent_spec.name in seen:
            raise ConfigError(f"{where}: duplicate agent name {agent_spec.name!r}; names must be unique")
        seen.add(agent_spec.name)
        try:
            agents.append(_agent(agent_spec, library))
        except (ConfigError, LibraryError) as error:
            raise ConfigError(f"{where}: {error}") from None
    return AgentRegistry(agents)


def load_agents(path: Path, library: Library) -> AgentRegistry:
    """Read and validate an agents file (see agents.yaml at the repo root for the format)."""
    try:
        text = path.read_text("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read agents file {path}: {error.strerror}; set AGENTS_FILE to its path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_agents(data, library, source=str(path))
