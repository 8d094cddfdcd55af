"""The scheduler alone, pure Python: priorities and aging, token budget, chunked prefill, preemption, prefix hits.

A tiny driver plays the engine loop: schedule, pretend the forward pass ran
(``update``), give every sequence that needs one a next token, finish what is done.
"""

from __future__ import annotations

import pytest

from quartet.services.common.errors import ResourceExhausted
from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.api.request import Priority, SamplingParams, StoppingCriteria
from quartet.services.engine.sched.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from quartet.services.engine.sched.sequence import RequestState, SequenceStatus, new_sequences

BLOCK = 4
_ids = iter(range(1_000_000))


def request(
    name: str,
    prompt_len: int = 3,
    *,
    priority: Priority = Priority.DEFAULT,
    arrival: float = 0.0,
    max_tokens: int = 5,
    n: int = 1,
    prompt: list[int] | None = None,
) -> RequestState:
    prompt = prompt or [7] * prompt_len
    stopping = StoppingCriteria(max_tokens=max_tokens, ignore_eos=True)
    first = next(_ids)
    for _ in range(n - 1):
        next(_ids)
    return RequestState(
        request_id=name,
        prompt_ids=prompt,
        sampling=SamplingParams(n=n),
        stopping=stopping,
        priority=priority,
        sequences=new_sequences(
            first_seq_id=first,
            n=n,
            prompt_ids=prompt,
            max_tokens=max_tokens,
            stopping=stopping,
            eos_token_ids=[0],
            decode=lambda ids: "",
        ),
        sink=lambda event: None,
        arrival_time=arrival,
    )


def scheduler(
    *, num_blocks: int = 64, max_num_seqs: int = 8, budget: int = 64, max_waiting: int = 16, aging: float = 5.0
) -> Scheduler:
    config = SchedulerConfig(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, max_waiting=max_waiting, priority_aging_seconds=aging
    )
    return Scheduler(config, BlockManager(num_blocks, BLOCK))


def step(s: Scheduler) -> SchedulerOutput:
    """One engine step: schedule, 'compute', sample token 5 where a next token is due, retire finished sequences."""
    out = s.schedule()
    s.update(out)
    for item in out.scheduled:
        if item.needs_logits:
            item.sequence.append(5, now=1.0)
            if item.sequence.is_finished:
                s.finish(item.sequence)
    return out


def names(out: SchedulerOutput) -> list[tuple[str, int]]:
    return [(item.sequence.request_id, item.num_new_tokens) for item in out.scheduled]


def test_higher_priority_first_then_arrival_order() -> None:
    s = scheduler(max_num_seqs=2)
    for r in (request("a"), request("router", priority=Priority.ROUTER, arrival=0.1), request("b", arrival=0.2)):
        s.add(r)
    assert names(s.schedule()) == [("router", 3), ("a", 3)]
    assert s.num_running == 2 and s.num_waiting == 1


def test_token_budget_chunks_a_long_prompt_while_others_keep_decoding() -> None:
    s = scheduler(budget=8)
    s.add(request("short", 3, max_tokens=10))
    assert names(step(s)) == [("short", 3)]
    s.add(request("long", 20, arrival=1.0))
    # The running sequence decodes first; the long prompt gets what is left of the budget, chunk by chunk.
    assert names(step(s)) == [("long", 7), ("short", 1)]
    out = step(s)
    assert names(out) == [("long", 7), ("short", 1)] and not out.scheduled[0].needs_logits
    out = step(s)
    assert names(out) == [("long", 6), ("short", 1)] and out.scheduled[0].needs_logits  # the prompt's last chunk
    assert names(step(s)) == [("short", 1), ("long", 1)]  # both decode now, in rank order


def test_max_num_seqs_caps_the_running_batch() -> None:
    s = scheduler(max_num_seqs=2)
    for i in range(3):
        s.add(request(f"r{i}", arrival=i))
    assert len(step(s).scheduled) == 2 and s.num_waiting == 1


def test_a_default_request_eventually_runs_under_a_stream_of_router_requests() -> None:
    """Aging: waiting raises the effective priority, so a steady flood of router work cannot starve default work.

    One seat; every step a new router request arrives and the previous one finishes. Without aging
    the default request would wait forever; with 1 s aging it overtakes the routers that arrive
    more than 2 s after it.
    """

    def steps_until_default_runs(aging: float) -> int | None:
        s = scheduler(max_num_seqs=1, aging=aging)
        s.add(request("default", arrival=0.0, max_tokens=1))
        clock = 0.0
        for number in range(40):
            clock += 0.25
            s.add(request(f"router{number}", priority=Priority.ROUTER, arrival=clock, max_tokens=1))
            if any(name == "default" for name, _ in names(step(s))):
                return number
        return None

    assert steps_until_default_runs(aging=1e9) is None  # the rule matters: no aging, starvation
    ran = steps_until_default_runs(aging=1.0)
    assert ran is not None and 6 <= ran <= 9  # routers that arrived within 2 s of it still go first


def test_preemption_frees_the_newest_lowest_priority_sequence_and_recomputes_it_later() -> None:
    # 4 blocks of 4 tokens. Two sequences of 7 prompt tokens hold 2 blocks each; the first decode at
    # position 8 needs a fifth block, so the worst-ranked sequence (newer, same priority) is preempted.
    s = scheduler(num_blocks=4)
    old = request("old", prompt=[7] * 7, max_tokens=4, arrival=0.0)
    new = request("new", prompt=[8] * 7, max_tokens=4, arrival=1.0)
    s.add(old)
    s.add(new)
    step(s)  # both prefill and sample a first token
    step(s)  # both decode at position 7, still in their second block
    out = step(s)
    assert [seq.seq_id for seq in out.preempted] == [new.sequences[0].seq_id]
    assert names(out) == [("old", 1)]
    victim = new.sequences[0]
    assert victim.status is SequenceStatus.WAITING and victim.block_table == [] and victim.num_computed_tokens == 0
    assert victim.num_preemptions == 1 and s.num_preemptions == 1
    while not old.is_finished:
        step(s)
    out = step(s)  # readmitted: prompt + its output so far is prefilled again, partly from the prefix cache
    (item,) = out.scheduled
    assert item.sequence is victim and item.needs_logits
    assert item.start + item.num_new_tokens == 7 + 2  # 7 prompt tokens + 2 generated before preemption
    # Of the two full blocks it had computed, the first was still cached; the old sequence's growth evicted the other.
    assert item.start == 4
    while not new.is_finished:
        step(s)
    assert len(victim.output_ids) == 4  # the client sees all its tokens, preemption or not
    assert s.block_manager.num_free_blocks == 4


def test_a_sequence_preempts_itself_when_it_ranks_lowest() -> None:
    s = scheduler(num_blocks=4)
    router = request("router", 7, priority=Priority.ROUTER, max_tokens=6, arrival=1.0)
    default = request("default", 7, max_tokens=6, arrival=0.0)
    s.add(default)
    s.add(router)
    step(s)
    step(s)
    out = step(s)
    assert [seq.request_id for seq in out.preempted] == ["default"]  # lower priority loses although older
    assert names(out) == [("router", 1)]


def test_a_repeated_prefix_computes_fewer_prompt_tokens_and_takes_fewer_blocks() -> None:
    s = scheduler()
    system = list(range(100, 116))  # 16 tokens: four full blocks
    first = request("first", prompt=system + [1, 2, 3], max_tokens=5)
    second = request("second", prompt=system + [4, 5], max_tokens=3, arrival=1.0)
    s.add(first)
    assert names(step(s)) == [("first", 19)]
    free = s.block_manager.num_free_blocks
    s.add(second)
    out = s.schedule()
    assert names(out) == [("second", 2), ("first", 1)]  # the second computes only the tokens after the shared 16
    assert free - s.block_manager.num_free_blocks == 1  # one new block for them; the four others are shared
    first_blocks, second_blocks = first.sequences[0].block_table, second.sequences[0].block_table
    assert second_blocks[:4] == first_blocks[:4] and second_blocks[4] not in first_blocks
    assert (s.block_manager.stats.queried_tokens, s.block_manager.stats.hit_tokens) == (19 + 18, 16)


def test_full_queue_is_resource_exhausted_and_finish_removes_a_waiting_sequence() -> None:
    s = scheduler(max_waiting=1)
    first = request("first")
    s.add(first)
    with pytest.raises(ResourceExhausted, match="ENGINE_MAX_WAITING"):
        s.add(request("second"))
    s.finish(first.sequences[0])
    assert s.num_waiting == 0 and s.schedule().is_empty


def test_choices_of_a_request_are_scheduled_as_sequences() -> None:
    s = scheduler(max_num_seqs=3)
    s.add(request("pair", n=2))
    s.add(request("other", n=2, arrival=1.0))
    out = step(s)
    assert names(out) == [("pair", 3), ("pair", 3), ("other", 3)]
    assert s.num_running == 2 and s.num_waiting == 1


def test_config_needs_budget_for_one_decode_per_running_sequence() -> None:
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=4)


def test_a_router_request_takes_a_seat_from_a_full_batch_of_topic_streams() -> None:
    s = scheduler(max_num_seqs=2)
    s.add(request("topic-a", priority=Priority.TOPIC, max_tokens=50))
    s.add(request("topic-b", priority=Priority.TOPIC, arrival=0.1, max_tokens=50))
    step(s)
    step(s)
    s.add(request("router", priority=Priority.ROUTER, arrival=0.2, max_tokens=2))
    out = step(s)
    # The newest topic stream gives its seat up; the decision starts at once.
    assert [seq.request_id for seq in out.preempted] == ["topic-b"]
    assert ("router", 3) in names(out) and ("topic-a", 1) in names(out)
    assert names(step(s)) == [("router", 1), ("topic-a", 1)]  # the router's last token frees the seat
    # topic-b is back; its KV blocks were still in the prefix cache, so only its last token is recomputed.
    assert names(step(s)) == [("topic-a", 1), ("topic-b", 1)]


def test_a_sequence_gives_its_seat_up_at_most_once() -> None:
    s = scheduler(max_num_seqs=1)
    s.add(request("default", max_tokens=20))
    step(s)
    s.add(request("router0", priority=Priority.ROUTER, arrival=0.1, max_tokens=1))
    assert [seq.request_id for seq in step(s).preempted] == ["default"]
    step(s)  # default comes back
    s.add(request("router1", priority=Priority.ROUTER, arrival=0.2, max_tokens=1))
    out = step(s)
    assert not out.preempted and names(out) == [("default", 1)]  # it keeps its seat this time


def test_equal_priorities_never_take_seats() -> None:
    s = scheduler(max_num_seqs=1)
    s.add(request("first", max_tokens=5))
    step(s)
    s.add(request("second", arrival=0.1, max_tokens=5))
    out = step(s)
    assert not out.preempted and names(out) == [("first", 1)]
