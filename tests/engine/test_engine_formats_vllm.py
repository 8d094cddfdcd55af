"""The vLLM backend: its pure conversions here, the engine itself only where vllm is installed (GPU image)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass

import pytest

from quartet.services.engine.backends.vllm_runner import (
    finish_reason,
    position_logprobs,
    sampling_kwargs,
    structured_outputs_kwargs,
)
from quartet.services.engine.constraints import GrammarKind, GrammarSpec
from quartet.services.engine.api.events import FinishReason
from quartet.services.engine.api.request import GenerateRequest, SamplingParams, StoppingCriteria, TextInput

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_sampling_kwargs_pass_what_was_set_and_leave_vllm_defaults_otherwise() -> None:
    request = GenerateRequest(
        input=TextInput("hi"),
        sampling=SamplingParams(
            temperature=0.7, top_k=0, min_p=0.1, seed=3, logit_bias={5: -1.0}, logprobs=True, top_logprobs=4, n=2
        ),
        stopping=StoppingCriteria(stop=("END",), stop_token_ids=(9,), ignore_eos=True),
    )
    kwargs = sampling_kwargs(request, max_tokens=32)
    assert kwargs["temperature"] == 0.7 and kwargs["min_p"] == 0.1 and kwargs["seed"] == 3
    assert kwargs["n"] == 2 and kwargs["max_tokens"] == 32 and kwargs["logprobs"] == 4
    assert kwargs["stop"] == ["END"] and kwargs["stop_token_ids"] == [9] and kwargs["ignore_eos"] is True
    assert kwargs["logit_bias"] == {5: -1.0}
    assert "top_k" not in kwargs and "top_p" not in kwargs and "repetition_penalty" not in kwargs
    plain = sampling_kwargs(GenerateRequest(input=TextInput("hi")), max_tokens=8)
    assert "logprobs" not in plain and plain["n"] == 1


def test_grammar_maps_to_structured_outputs() -> None:
    assert structured_outputs_kwargs(None) is None
    assert structured_outputs_kwargs(GrammarSpec(GrammarKind.JSON_SCHEMA, '{"type": "object"}')) == {
        "json": '{"type": "object"}'
    }
    assert structured_outputs_kwargs(GrammarSpec(GrammarKind.REGEX, "a+")) == {"regex": "a+"}
    assert structured_outputs_kwargs(GrammarSpec(GrammarKind.EBNF, 'root ::= "x"')) == {"grammar": 'root ::= "x"'}


def test_finish_reasons() -> None:
    assert finish_reason("length") is FinishReason.LENGTH
    assert finish_reason("abort") is FinishReason.ABORT
    assert finish_reason("stop") is FinishReason.STOP and finish_reason(None) is FinishReason.STOP


@dataclass
class LogprobRecord:
    """The fields of vLLM's ``vllm.logprobs.Logprob`` the adapter reads (vllm is not installed here)."""

    logprob: float
    rank: int
    decoded_token: str = ""


def test_logprobs_keep_the_chosen_token_apart_from_the_ranked_top() -> None:
    # The chosen token (7) ranked 5th: vLLM adds it to the top-2 dict.
    entries = [{3: LogprobRecord(-0.1, 1), 4: LogprobRecord(-2.0, 2), 7: LogprobRecord(-5.0, 5)}]
    (position,) = position_logprobs([7], entries, lambda t: f"<{t}>", num_top=2)
    assert (position.chosen.token_id, position.chosen.text, position.chosen.logprob) == (7, "<7>", -5.0)
    assert [(t.token_id, t.logprob) for t in position.top] == [(3, -0.1), (4, -2.0)]
    assert position_logprobs([7], None, str, num_top=0) == ()


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed: the vllm extra is for the GPU image only")
async def test_vllm_engine_generates_json_with_the_bundled_model() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vllm is installed but no CUDA device is visible")
    from quartet.services.engine.backends.vllm_runner import VllmEngine
    from quartet.services.engine.api.events import Chunk, Complete
    from quartet.services.engine.api.request import ChatInput, ChatMessage, Constraint
    from quartet.services.engine.settings import EngineSettings

    engine = VllmEngine.from_settings(EngineSettings(_env_file=None, backend="vllm", gpu_memory_utilization=0.3))
    try:
        request = GenerateRequest(
            input=ChatInput((ChatMessage("user", "A person as JSON"),)),
            sampling=SamplingParams(temperature=0),
            stopping=StoppingCriteria(max_tokens=64),
            constraint=Constraint("json_object"),
        )
        events = [event async for event in engine.generate(request)]
        text = "".join(e.text for e in events if isinstance(e, Chunk))
        assert isinstance(json.loads(text), dict)
        assert isinstance(events[-1], Complete) and events[-1].finish_reason is FinishReason.STOP
    finally:
        await engine.close()
