"""One sequence's walk through its grammar, with the next bitmask filled off the engine thread.

The engine loop's order per step is: forward pass, sample (which needs this
step's mask), accept the token. The mask for step t+1 depends only on the
tokens up to t, so ``accept`` hands the fill for the next step to a worker
thread at once and it runs while the engine thread does the next forward pass
(torch releases the GIL inside its kernels). ``wait`` collects it in the
sampler. ``prepare`` starts a fill that is not already running, for callers
that want to be explicit; a ``wait`` without any ``prepare`` computes inline.

Only the engine thread calls these methods; the lock-free handoff is safe
because ``accept`` never runs while a fill is in flight (it waits for it first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future

import torch
import xgrammar as xgr

log = logging.getLogger(__name__)


class SequenceConstraint:
    def __init__(
        self,
        compiled: xgr.CompiledGrammar,
        *,
        vocab_size: int,
        stop_token_ids: Sequence[int],
        executor: Executor | None = None,
    ) -> None:
        self._matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=list(stop_token_ids) or None)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._executor = executor
        self._pending: Future[torch.Tensor] | None = None
        self._ready: torch.Tensor | None = None
        self.is_failed = False
        self.prepare()

    @property
    def is_terminated(self) -> bool:
        """The grammar is complete and a stop token was accepted."""
        return self._matcher.is_terminated()

    def prepare(self) -> None:
        """Start filling the next bitmask in the background (no-op if it is running or done)."""
        if self._ready is not None or self._pending is not None or self.is_failed or self.is_terminated:
            return
        if self._executor is None:
            return
        self._pending = self._executor.submit(self._fill)

    def wait(self) -> torch.Tensor | None:
        """The allowed-token bitmask for the next token, int32 [ceil(V / 32)]; None means no restriction."""
        if self.is_failed:
            return None
        if self._ready is None:
            if self._pending is not None:
                self._ready = self._pending.result()
                self._pending = None
            else:
                self._ready = self._fill()
        return self._ready

    def accept(self, token_id: int) -> bool:
        """Advance past a sampled token and start on the next mask; False if the grammar refused it."""
        if self._pending is not None:  # never touch the matcher while a fill reads it
            self._pending.result()
            self._pending = None
        self._ready = None
        if self.is_failed or self.is_terminated:
            return not self.is_failed
        if not self._matcher.accept_token(token_id):
            # Only possible when a token was chosen without this mask (a bug, or a stop token id the
            # grammar does not end with): stop constraining rather than fail the whole batch.
            log.warning(
                "grammar refused a sampled token; the sequence continues unconstrained", extra={"token_id": token_id}
            )
            self.is_failed = True
            return False
        self.prepare()
        return True

    def _fill(self) -> torch.Tensor:
        self._matcher.fill_next_token_bitmask(self._bitmask, 0)
        return self._bitmask[0].clone()


def prepare(constraints: Sequence[SequenceConstraint | None]) -> None:
    """Start the next bitmask of every constrained sequence in a batch (call before the forward pass)."""
    for constraint in constraints:
        if constraint is not None:
            constraint.prepare()


def apply_token_bitmask(logits: torch.Tensor, masks: torch.Tensor, rows: Sequence[int]) -> None:
    """Set to -inf, in place, the logits of ``rows`` whose bit is 0 in the matching row of ``masks``."""
    masks = masks.to(logits.device, non_blocking=True)
    xgr.apply_token_bitmask_inplace(logits, masks, vocab_size=logits.shape[-1], indices=list(rows))
