"""Bad requests fail fast with the right status and name the field; Tokenize and CountTokens agree."""

from __future__ import annotations

import grpc
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

HELLO = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Hello")])


@pytest.fixture
async def stub(engine_address: str):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def generate_error(stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.Generate(request):
            pass
    return caught.value


def chat(**fields) -> pb.GenerateRequest:
    return pb.GenerateRequest(chat=HELLO, **fields)


INVALID = [
    ("no input", pb.GenerateRequest(), "input"),
    ("empty text", pb.GenerateRequest(text=""), "text"),
    ("empty token ids", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[])), "token_ids"),
    ("token id past vocab", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 49152])), "token_ids"),
    ("no messages", pb.GenerateRequest(chat=pb.ChatInput()), "chat.messages"),
    ("bad role", pb.GenerateRequest(chat=pb.ChatInput(messages=[pb.ChatMessage(role="wizard", content="hi")])), "role"),
    ("temperature", chat(sampling=pb.SamplingParams(temperature=2.5)), "temperature"),
    ("negative temperature", chat(sampling=pb.SamplingParams(temperature=-0.1)), "temperature"),
    ("top_p zero", chat(sampling=pb.SamplingParams(top_p=0.0)), "top_p"),
    ("top_p above one", chat(sampling=pb.SamplingParams(top_p=1.5)), "top_p"),
    ("min_p", chat(sampling=pb.SamplingParams(min_p=1.5)), "min_p"),
    ("presence", chat(sampling=pb.SamplingParams(presence_penalty=3.0)), "presence_penalty"),
    ("frequency", chat(sampling=pb.SamplingParams(frequency_penalty=-2.5)), "frequency_penalty"),
    ("repetition", chat(sampling=pb.SamplingParams(repetition_penalty=0.0)), "repetition_penalty"),
    ("bias value", chat(sampling=pb.SamplingParams(logit_bias={5: 150.0})), "logit_bias"),
    ("bias token", chat(sampling=pb.SamplingParams(logit_bias={99999: 1.0})), "logit_bias"),
    ("top_logprobs range", chat(sampling=pb.SamplingParams(logprobs=True, top_logprobs=21)), "top_logprobs"),
    ("top_logprobs without logprobs", chat(sampling=pb.SamplingParams(top_logprobs=2)), "top_logprobs"),
    ("n zero", chat(sampling=pb.SamplingParams(n=0)), "n"),
    ("n too many", chat(sampling=pb.SamplingParams(n=1000)), "n"),
    ("max_tokens zero", chat(stopping=pb.StoppingCriteria(max_tokens=0)), "max_tokens"),
    ("empty stop", chat(stopping=pb.StoppingCriteria(stop=[""])), "stop"),
    ("stop token past vocab", chat(stopping=pb.StoppingCriteria(stop_token_ids=[60000])), "stop_token_ids"),
    ("regex that does not compile", chat(constraint=pb.Constraint(regex="(ab")), "constraint.regex"),
    ("schema that is not JSON", chat(constraint=pb.Constraint(json_schema="{nope")), "constraint.json_schema"),
    ("grammar without its rule", chat(constraint=pb.Constraint(grammar='root ::= "a" | b')), "constraint.grammar"),
    ("no choices", chat(constraint=pb.Constraint(choice=pb.ChoiceList())), "constraint.choice"),
    ("tool not offered", chat(constraint=pb.Constraint(tool_name="f")), "constraint.tool_name"),
    (
        "constraint with ignore_eos",
        chat(constraint=pb.Constraint(json_object=True), stopping=pb.StoppingCriteria(ignore_eos=True)),
        "ignore_eos",
    ),
    ("unnamed tool", pb.GenerateRequest(chat=pb.ChatInput(messages=HELLO.messages, tools=[pb.Tool()])), "tools"),
]


@pytest.mark.parametrize("name,request_,field", INVALID, ids=[case[0] for case in INVALID])
async def test_invalid_request_names_the_field(stub, name: str, request_: pb.GenerateRequest, field: str) -> None:
    error = await generate_error(stub, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field in error.details()


async def test_max_tokens_past_context_names_the_numbers(stub) -> None:
    count = await stub.CountTokens(pb.CountTokensRequest(chat=HELLO))
    error = await generate_error(stub, chat(stopping=pb.StoppingCriteria(max_tokens=8192)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details()
    assert "max_tokens" in details and "8192" in details and str(count.num_tokens) in details


async def test_prompt_longer_than_context_is_invalid(stub) -> None:
    error = await generate_error(stub, pb.GenerateRequest(token_ids=pb.TokenIds(ids=[42] * 8192)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "8192" in error.details()


async def test_unknown_model_is_not_found_and_lists_the_served_one(stub) -> None:
    error = await generate_error(stub, chat(model="gpt-5"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in error.details()


async def test_served_model_name_is_accepted(stub) -> None:
    request = chat(model="HuggingFaceTB/SmolLM2-135M-Instruct", stopping=pb.StoppingCriteria(max_tokens=1))
    events = [r async for r in stub.Generate(request)]
    assert events[-1].complete.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)


async def test_duplicate_running_request_id_is_rejected(stub) -> None:
    story = pb.GenerateRequest(
        request_id="dup",
        chat=HELLO,
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=2000, ignore_eos=True),
    )
    call = stub.Generate(story)
    await call.read()
    error = await generate_error(stub, story)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in error.details()
    call.cancel()


async def test_count_tokens_matches_tokenize_for_text_and_chat(stub) -> None:
    for field in ({"text": "Hello there, how are you?"}, {"chat": HELLO}):
        tokens = await stub.Tokenize(pb.TokenizeRequest(**field))
        count = await stub.CountTokens(pb.CountTokensRequest(**field))
        assert count.num_tokens == len(tokens.token_ids) > 0
        assert count.context_length == 8192


async def test_chat_tokenization_uses_the_template(stub) -> None:
    tokens = await stub.Tokenize(pb.TokenizeRequest(chat=HELLO))
    plain = await stub.Tokenize(pb.TokenizeRequest(text="Hello"))
    assert tokens.token_ids[0] == 1  # <|im_start|>
    assert len(tokens.token_ids) > len(plain.token_ids) + 5


async def test_tokenize_without_input_is_invalid(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CountTokens(pb.CountTokensRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input" in caught.value.details()
