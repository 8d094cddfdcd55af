"""The model's tokenizer: ``load_tokenizer`` picks the implementation for a model directory.

``HFTokenizer`` (a Hugging Face tokenizer and its chat template) serves most
models, ``harmony.HarmonyTokenizer`` (openai-harmony, offline vocabulary)
gpt-oss. The interface they share is ``tokenizer_base.Tokenizer``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.text.harmony.tokenizer import HarmonyTokenizer
from quartet.services.engine.api.request import ChatInput, ChatMessage
from quartet.services.engine.text.tokenizer_base import Tokenizer
from quartet.services.engine.text.tool_prompt import with_tools

if TYPE_CHECKING:
    from quartet.services.engine.constraints import ConstraintCompiler

log = logging.getLogger(__name__)


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The tokenizer for the model in ``model_dir``: harmony for gpt-oss, Hugging Face's otherwise."""
    if _model_type(model_dir) == "gpt_oss":
        return HarmonyTokenizer.load(model_dir)
    return HFTokenizer.load(model_dir)


class HFTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer loaded from a local model directory."""

    def __init__(self, hf_tokenizer, eos_token_ids: Sequence[int]) -> None:
        self._tok = hf_tokenizer
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        template = hf_tokenizer.chat_template or ""
        if isinstance(template, dict):  # several named templates: "default" is the chat one
            template = template.get("default", "")
        self._template = template
        # Templates without tools get them in the system message (tool_prompt.py).
        self.template_supports_tools = "tools" in template
        self.supports_developer_role = "developer" in template

    @classmethod
    def load(cls, model_dir: Path) -> HFTokenizer:
        from transformers import AutoTokenizer

        hf_tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        return cls(hf_tokenizer, _eos_ids(model_dir, hf_tokenizer))

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def has_chat_template(self) -> bool:
        return bool(self._template)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def render_chat(self, chat: ChatInput) -> str:
        if not self._template:
            raise InvalidArgument(
                "chat: the loaded model has no chat template; send text or token_ids instead", field="chat"
            )
        source = chat.messages
        tools = None
        if self.template_supports_tools:
            tools = [_tool_dict(t.name, t.description, t.parameters_json) for t in chat.tools] or None
        else:
            source = tuple(with_tools(chat.messages, chat.tools, parallel=chat.parallel_tool_calls))
        messages = [self._message_dict(m) for m in source]
        try:
            return self._tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja raises for conversations the template rejects
            raise InvalidArgument(
                f"chat.messages: the model's chat template rejected the conversation: {error}", field="chat.messages"
            ) from error

    def _message_dict(self, message: ChatMessage) -> dict:
        role = message.role
        # Templates without a developer role get OpenAI's older name for the same thing.
        if role == "developer" and not self.supports_developer_role:
            role = "system"
        entry: dict = {"role": role, "content": message.content}
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.reasoning:
            entry["reasoning_content"] = message.reasoning
        if message.tool_calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json_or_text(c.arguments)}}
                for c in message.tool_calls
            ]
        return entry

    def _new_constraint_compiler(self, vocab_size: int) -> ConstraintCompiler:
        from quartet.services.engine.constraints import ConstraintCompiler

        return ConstraintCompiler.from_hf_tokenizer(self._tok, vocab_size=vocab_size, stop_token_ids=self.eos_token_ids)


def _tool_dict(name: str, description: str, parameters_json: str) -> dict:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": _json_or_text(parameters_json) or {}},
    }


def _json_or_text(text: str):
    """Templates expect arguments and schemas as objects; keep text that is not JSON as is."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_type(model_dir: Path) -> str:
    config = model_dir / "config.json"
    if not config.is_file():
        return ""
    return str(json.loads(config.read_text()).get("model_type", ""))


def _eos_ids(model_dir: Path, hf_tokenizer) -> list[int]:
    """End-of-sequence ids: the generation config's (may be a list) and the tokenizer's own."""
    ids: list[int] = []
    config_path = model_dir / "generation_config.json"
    if config_path.is_file():
        value = json.loads(config_path.read_text()).get("eos_token_id")
        ids.extend(value if isinstance(value, list) else [value] if value is not None else [])
    if hf_tokenizer.eos_token_id is not None:
        ids.append(hf_tokenizer.eos_token_id)
    if not ids:
        log.warning("model has no end-of-sequence token; generation stops only at max_tokens or stop strings")
    return [int(i) for i in ids]
