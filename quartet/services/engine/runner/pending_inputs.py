"""Inputs that are tokens a step still in flight picks on the device (asynchronous scheduling).

With asynchronous scheduling the engine launches step k+1 before it has read
step k's tokens: a sequence decoding in both steps feeds step k+1 the token that
step k's argmax leaves on the device. The host knows where those inputs go
(their index in the step's flat input ids) and where they come from (the
sequence's row in step k); one gather on the device fills them in, so no step
waits for a round trip through the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from quartet.services.engine.runner.base import LaunchedStep
from quartet.services.engine.sched.scheduler import ScheduledSequence


@dataclass(slots=True)
class PendingInputs:
    """Flat input indices ``dst`` take the previous step's device tokens at rows ``src``."""

    dst: list[int] = field(default_factory=list)
    src: list[int] = field(default_factory=list)

    def fill(self, input_ids: torch.Tensor, prev_tokens: torch.Tensor | None) -> None:
        """Write the pending tokens into ``input_ids`` on the device (eager steps; graphs fill their own buffer)."""
        if not self.dst:
            return
        if prev_tokens is None:
            raise RuntimeError("a step reads pending tokens but the step in flight kept none on the device")
        device = input_ids.device
        dst = torch.tensor(self.dst, dtype=torch.long, device=device)
        src = torch.tensor(self.src, dtype=torch.long, device=device)
        input_ids.index_copy_(0, dst, prev_tokens.index_select(0, src))


def pending_inputs(batch: Sequence[ScheduledSequence], prev: LaunchedStep | None) -> PendingInputs:
    """Which of ``batch``'s inputs are not on the host yet, and where in ``prev`` they are."""
    pending = PendingInputs()
    offset = 0
    for item in batch:
        seq = item.sequence
        end = item.start + item.num_new_tokens
        if end > len(seq.token_ids):
            # Only a sequence's newest token can be pending, and only the step that picked it holds it.
            if end != len(seq.token_ids) + 1 or prev is None or seq.seq_id not in prev.rows:
                raise RuntimeError(
                    f"sequence {seq.seq_id} is scheduled past its known tokens, but no step in flight picked "
                    "the missing one"
                )
            pending.dst.append(offset + item.num_new_tokens - 1)
            pending.src.append(prev.rows[seq.seq_id])
        offset += item.num_new_tokens
    return pending


def host_input_ids(batch: Sequence[ScheduledSequence]) -> list[int]:
    """The step's flat input ids as the host knows them; pending ones are 0 until ``PendingInputs.fill``."""
    ids: list[int] = []
    for item in batch:
        chunk = item.sequence.token_ids[item.start : item.start + item.num_new_tokens]
        ids.extend(chunk)
        ids.extend([0] * (item.num_new_tokens - len(chunk)))
    return ids
