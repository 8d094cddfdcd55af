"""Drive a ModelRunner step by step with the real block manager, the way the engine loop does.

Tests name sequences and how many of their tokens to compute; ``Steps`` allocates
their KV blocks, orders the batch as the scheduler would (prompt chunks first),
runs it and returns the logits of the sequences that reached their last token.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.api.request import StoppingCriteria
from quartet.services.engine.runner.base import ModelRunner
from quartet.services.engine.sched.scheduler import ScheduledSequence
from quartet.services.engine.sched.sequence import Sequence, new_sequences


class Steps:
    def __init__(self, runner: ModelRunner, *, enable_prefix_caching: bool = False) -> None:
        layout = runner.kv_layout
        self.runner = runner
        self.blocks = BlockManager(layout.num_blocks, layout.block_size, enable_prefix_caching=enable_prefix_caching)
        self._next_id = 0

    def sequence(self, prompt: Seq[int]) -> Sequence:
        (seq,) = new_sequences(
            first_seq_id=self._next_id,
            n=1,
            prompt_ids=list(prompt),
            max_tokens=10_000,
            stopping=StoppingCriteria(ignore_eos=True),
            eos_token_ids=[],
            decode=lambda ids: "",
        )
        self._next_id += 1
        return seq

    def run(self, work: Seq[tuple[Sequence, int | None]]) -> torch.Tensor:
        """Compute ``n`` more tokens of each sequence (None: all it has left); logits of those that finished."""
        batch = []
        for seq, n in work:
            if not seq.block_table:
                self.blocks.allocate(seq)
            n = seq.num_uncomputed_tokens if n is None else n
            self.blocks.append_slots(seq, n)
            start = seq.num_computed_tokens
            batch.append(ScheduledSequence(seq, start, n, needs_logits=start + n == seq.num_tokens))
        batch.sort(key=lambda item: not item.is_prefill)
        if [item.sequence for item in batch] != [seq for seq, _ in work]:
            raise ValueError("list prompt chunks before one-token decodes, as the scheduler does")
        logits = self.runner.execute(batch)
        for item in batch:
            item.sequence.num_computed_tokens = item.start + item.num_new_tokens
            self.blocks.mark_computed(item.sequence)
        return logits

    def feed(self, seq: Sequence, token: int) -> None:
        """Append a token to run next (what sampling does)."""
        seq.token_ids.append(token)

    def free(self, *seqs: Sequence) -> None:
        for seq in seqs:
            self.blocks.free(seq)
            self.runner.release(seq.seq_id)
