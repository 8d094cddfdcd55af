"""agents.yaml and the prompt/schema whitelist: every mistake is a clear startup error."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from quartet.services.router.agents import AgentKind, MemoryPolicy, Priority
from quartet.services.router.config import ConfigError, load_agents, parse_agents
from quartet.services.router.library import Library, LibraryError
from quartet.services.router.settings import REPO_ROOT

SCHEMA = {
    "type": "object",
    "properties": {"Operation": {"enum": ["A", "B"]}, "Term": {"type": "string"}},
    "required": ["Operation", "Term"],
}
ROUTER = {
    "name": "router", "kind": "router", "prompt": "route", "schema": "decision",
    "output_prefix": '{"Operation": "',
    "examples": [{"input": "x", "output": {"Operation": "A", "Term": "x"}}],
}
TOPIC = {"name": "chat", "kind": "topic", "prompt": "talk", "memory": {"policy": "session_window", "k": 4}}


@pytest.fixture
def library(tmp_path) -> Library:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "prompts" / "route.md").write_text("Route it.\n")
    (tmp_path / "prompts" / "talk.md").write_text("Talk.\n")
    (tmp_path / "schemas" / "decision.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "prompts" / "summarize.md").write_text("Summarize.\n")
    (tmp_path / "grammars").mkdir()
    (tmp_path / "grammars" / "ab.gbnf").write_text('root ::= "{\\"Operation\\": \\"" ("A" | "B") "\\", \\"Term\\": \\"x\\"}"\n')
    (tmp_path / "secret.md").write_text("outside the whitelist")
    return Library(tmp_path / "prompts", tmp_path / "schemas", tmp_path / "grammars")


def config(*agents: dict) -> dict:
    return {"agents": [copy.deepcopy(a) for a in agents]}


def with_(agent: dict, **changes) -> dict:
    return {**copy.deepcopy(agent), **changes}


def test_repository_agents_file_is_valid():
    agents = load_agents(REPO_ROOT / "agents.yaml", Library(REPO_ROOT / "prompts", REPO_ROOT / "schemas", REPO_ROOT / "grammars"))
    router, chat = agents.get("router"), agents.get("chat")
    assert router.grammar_id == "router_decision" and "root      ::=" in router.grammar
    assert {a.memory_policy for a in agents} == set(MemoryPolicy)  # every policy has a shipped agent
    assert router.kind is AgentKind.ROUTER and router.priority is Priority.ROUTER
    assert router.generation.temperature == 0.0 and router.examples
    assert router.schema["properties"]["Operation"]["enum"][:3] == ["LOCATE", "WEATHER", "CHAT"]
    assert chat.kind is AgentKind.TOPIC and chat.priority is Priority.TOPIC
    assert chat.memory_policy is MemoryPolicy.SESSION_WINDOW and chat.memory_k > 0


def test_defaults_follow_the_kind(library):
    agents = parse_agents(config(ROUTER, with_(TOPIC, memory=None)), library)
    assert agents.get("router").generation.temperature == 0.0
    assert agents.get("chat").generation.temperature > 0.0
    assert agents.get("chat").memory_policy is MemoryPolicy.NONE
    assert [a.name for a in agents] == ["router", "chat"]
    assert agents.get("router").system_prompt == "Route it."


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ([with_(TOPIC, prompt="missing")], "unknown prompt id 'missing'"),
        ([with_(TOPIC, prompt="../etc/passwd")], "prompt id '../etc/passwd' is not valid"),
        ([with_(TOPIC, prompt="../secret")], "prompt id '../secret' is not valid"),
        ([with_(TOPIC, prompt="/etc/passwd")], "is not valid"),
        ([with_(TOPIC, prompt="Talk")], "prompt id 'Talk' is not valid"),
        ([with_(ROUTER, schema="../schemas/decision")], "schema id '../schemas/decision' is not valid"),
        ([with_(ROUTER, schema="nope")], "unknown schema id 'nope'"),
        ([ROUTER, with_(TOPIC, name="router")], "duplicate agent name 'router'"),
        ([with_(ROUTER, schema=None)], "needs 'schema'"),
        ([with_(ROUTER, memory={"policy": "session_window"})], "stateless"),
        ([with_(ROUTER, generation={"temperature": 0.7})], "decodes greedily"),
        ([with_(ROUTER, examples=[{"input": "x", "output": {"Operation": "Z", "Term": "x"}}])], "examples[0].output does not fit schema"),
        ([with_(ROUTER, output_prefix='{"Term": "')], "does not begin with output_prefix"),
        ([with_(TOPIC, schema="decision")], "belong to router agents"),
        ([with_(TOPIC, memroy={"k": 3})], "memroy: Extra inputs are not permitted"),
        ([with_(TOPIC, memory={"policy": "forever"})], "memory.policy"),
        ([with_(TOPIC, kind="oracle")], "kind"),
        ([with_(TOPIC, name="Chat Bot")], "name"),
        ([with_(TOPIC, generation={"max_tokens": 0})], "max_tokens"),
        ([], "agents"),
        ([with_(ROUTER, grammar="missing")], "unknown grammar id 'missing'"),
        ([with_(ROUTER, grammar="../grammars/ab")], "grammar id '../grammars/ab' is not valid"),
        ([with_(TOPIC, grammar="ab")], "belong to router agents"),
        ([with_(TOPIC, memory={"policy": "session_window", "summary": {"after_turns": 2}})], "applies to the topic_summary policy"),
        ([with_(TOPIC, memory={"policy": "topic_summary", "summary": {"prompt": "nope"}})], "unknown prompt id 'nope'"),
        ([with_(TOPIC, generation={"top_p": 0})], "top_p"),
    ],
    ids=[
        "unknown-prompt", "traversal-prompt", "traversal-sibling", "absolute-prompt", "uppercase-prompt",
        "traversal-schema", "unknown-schema", "duplicate-name", "router-without-schema", "router-with-memory",
        "router-with-temperature", "example-misfits-schema", "prefix-mismatch", "topic-with-schema",
        "typo-key", "unknown-policy", "unknown-kind", "bad-name", "zero-max-tokens", "no-agents",
        "unknown-grammar", "traversal-grammar", "topic-with-grammar", "summary-on-window", "unknown-summary-prompt",
        "zero-top-p",
    ],
)
def test_invalid_configs_are_rejected(library, agents, message):
    with pytest.raises(ConfigError) as caught:
        parse_agents({"agents": agents}, library, source="test.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("test.yaml")


def test_error_names_the_agent(library):
    with pytest.raises(ConfigError, match=r"agents\[1\] \('chat'\): unknown prompt id 'missing'"):
        parse_agents(config(ROUTER, with_(TOPIC, prompt="missing")), library, source="test.yaml")


def test_symlink_out_of_the_whitelist_is_rejected(library, tmp_path):
    (library.prompts_dir / "sneaky.md").symlink_to(tmp_path / "secret.md")
    with pytest.raises(LibraryError, match="resolves outside"):
        library.prompt("sneaky")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"type": 5}', "is not a valid JSON Schema"),
        ('{"type": "string"}', "must describe an object"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_bad_schemas_are_rejected(library, content, message):
    (library.schemas_dir / "bad.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        parse_agents(config(with_(ROUTER, schema="bad", examples=[])), library)


def test_empty_prompt_is_rejected(library):
    (library.prompts_dir / "blank.md").write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        parse_agents(config(with_(TOPIC, prompt="blank")), library)


def test_file_errors(tmp_path, library):
    with pytest.raises(ConfigError, match="cannot read agents file .*AGENTS_FILE"):
        load_agents(tmp_path / "missing.yaml", library)
    broken = tmp_path / "broken.yaml"
    broken.write_text("agents: [name: x: y")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_agents(broken, library)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config(ROUTER, TOPIC)))
    assert len(load_agents(good, library)) == 2


def test_memory_policies_and_grammar_resolve(library):
    summary = with_(TOPIC, name="notes", memory={"policy": "topic_summary", "k": 3, "summary": {"after_turns": 2, "max_tokens": 40}})
    retrieval = with_(TOPIC, name="recall", memory={"policy": "retrieval", "k": 2}, generation={"top_p": 0.9})
    agents = parse_agents(config(with_(ROUTER, grammar="ab"), summary, retrieval), library)
    router = agents.get("router")
    assert router.grammar_id == "ab" and router.grammar.startswith("root ::=")
    notes = agents.get("notes")
    assert notes.memory_policy is MemoryPolicy.TOPIC_SUMMARY and notes.memory_policy.needs_topic
    assert notes.summarizing is not None and notes.summarizing.prompt == "Summarize."
    assert (notes.summarizing.after_turns, notes.summarizing.max_tokens) == (2, 40)
    recall = agents.get("recall")
    assert recall.memory_policy is MemoryPolicy.RETRIEVAL and not recall.memory_policy.needs_topic
    assert recall.summarizing is None and recall.generation.top_p == 0.9


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        ("root ::= value\n", "Rule 'value' not found"),
        ('root ::= "a\n', "Unexpected end of input"),
        ("root ::= [a-z\n", "Unexpected end of input"),
        ('start ::= "a"\n', "a rule named root"),
    ],
    ids=["undefined-rule", "unclosed-string", "unclosed-class", "no-root"],
)
def test_grammar_that_does_not_compile_is_rejected_with_the_compilers_message(library, grammar, message):
    (library.grammars_dir / "broken.gbnf").write_text(grammar)
    with pytest.raises(ConfigError) as caught:
        parse_agents(config(with_(ROUTER, grammar="broken")), library, source="test.yaml")
    assert "grammar 'broken'" in str(caught.value) and "does not compile" in str(caught.value)
    assert message in str(caught.value)


def test_schema_that_does_not_compile_is_rejected(library):
    # Valid JSON Schema as far as the validator goes, but no grammar can be built from it.
    (library.schemas_dir / "odd.json").write_text(json.dumps({"type": "object", "properties": {"a": {"type": "nonsense"}}}))
    with pytest.raises(ConfigError, match="is not a valid JSON Schema|does not compile"):
        parse_agents(config(with_(ROUTER, schema="odd", examples=[])), library)


def test_shipped_grammars_compile_in_the_engines_compiler_too():
    # The router checks with llguidance; the engine compiles with xgrammar: both must accept.
    xgr = pytest.importorskip("xgrammar")
    grammars = sorted((REPO_ROOT / "grammars").glob("*.gbnf"))
    assert grammars
    for path in grammars:
        xgr.Grammar.from_ebnf(path.read_text())
