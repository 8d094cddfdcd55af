"""Prompt, schema and grammar files, looked up by id inside whitelisted folders.

Clients and config name ids, never paths: an id must match ``^[a-z0-9_-]+$``
and the file it resolves to must lie inside its folder (symlinks included),
so no configuration can read ``../etc/passwd``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from quartet.services.router.grammar_check import GrammarError, check_gbnf, check_json_schema

ID_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_PROMPT_BYTES = 64 * 1024
MAX_GRAMMAR_BYTES = 64 * 1024


class LibraryError(ValueError):
    """An id that is malformed, names no file, or names a file that is not usable."""


def _resolve(folder: Path, kind: str, item_id: str, suffix: str) -> Path:
    if not isinstance(item_id, str) or not ID_PATTERN.match(item_id):
        raise LibraryError(f"{kind} id {item_id!r} is not valid: use lowercase letters, digits, '_' and '-' only")
    root = folder.resolve()
    path = (root / f"{item_id}{suffix}").resolve()
    if not path.is_relative_to(root):
        raise LibraryError(f"{kind} id {item_id!r} resolves outside {root}")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in root.glob(f"*{suffix}"))) or "none"
        raise LibraryError(f"unknown {kind} id {item_id!r}: no file {item_id}{suffix} in {root} (known: {known})")
    return path


class Library:
    """Reads ``<prompts_dir>/<id>.md``, ``<schemas_dir>/<id>.json`` and ``<grammars_dir>/<id>.gbnf``."""

    def __init__(self, prompts_dir: Path, schemas_dir: Path, grammars_dir: Path | None = None) -> None:
        self.prompts_dir = prompts_dir
        self.schemas_dir = schemas_dir
        self.grammars_dir = grammars_dir

    def prompt(self, prompt_id: str) -> str:
        path = _resolve(self.prompts_dir, "prompt", prompt_id, ".md")
        data = path.read_bytes()
        if len(data) > MAX_PROMPT_BYTES:
            raise LibraryError(f"prompt {prompt_id!r} is {len(data)} bytes; the limit is {MAX_PROMPT_BYTES}")
        text = data.decode("utf-8").strip()
        if not text:
            raise LibraryError(f"prompt {prompt_id!r} ({path}) is empty")
        return text

    def schema(self, schema_id: str) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12), checked to be a valid schema for an object."""
        path = _resolve(self.schemas_dir, "schema", schema_id, ".json")
        try:
            schema = json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as error:
            raise LibraryError(f"schema {schema_id!r} ({path}) is not JSON: {error}") from None
        if not isinstance(schema, dict):
            raise LibraryError(f"schema {schema_id!r} ({path}) must be a JSON object")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise LibraryError(f"schema {schema_id!r} ({path}) is not a valid JSON Schema: {error.message}") from None
        if schema.get("type") != "object":
            raise LibraryError(f"schema {schema_id!r} ({path}) must describe an object (\"type\": \"object\")")
        try:
            check_json_schema(schema)
        except GrammarError as error:
            raise LibraryError(f"schema {schema_id!r} ({path}) does not compile into a grammar: {error}") from None
        return schema

    def grammar(self, grammar_id: str) -> str:
        """A GBNF grammar (llama.cpp's notation), checked to compile."""
        if self.grammars_dir is None:
            raise LibraryError(f"grammar {grammar_id!r} named, but no grammars folder is configured (GRAMMARS_DIR)")
        path = _resolve(self.grammars_dir, "grammar", grammar_id, ".gbnf")
        data = path.read_bytes()
        if len(data) > MAX_GRAMMAR_BYTES:
            raise LibraryError(f"grammar {grammar_id!r} is {len(data)} bytes; the limit is {MAX_GRAMMAR_BYTES}")
        text = data.decode("utf-8")
        try:
            check_gbnf(text)
        except GrammarError as error:
            raise LibraryError(f"grammar {grammar_id!r} ({path}) does not compile: {error}") from None
        return text
