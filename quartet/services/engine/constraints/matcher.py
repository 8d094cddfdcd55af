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

With a token budget (``closing.py``) the constraint also keeps the tokens of a short
ending from its state. The invariant is that the ending fits the tokens left: ``vet``
replaces a sampled token whose state would need a longer ending than the budget leaves
by the ending's first token, and once the ending takes all that is left, the mask allows
only its next token. Either way the whole ending is then written and the output ends
there (``is_closed``; the engine finishes it as "length"), so it completes the grammar
before the budget runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future

import torch
import xgrammar as xgr

from quartet.services.engine.constraints.closing import EndingTokenizer, ending_tokens

log = logging.getLogger(__name__)


class SequenceConstraint:
    def __init__(
        self,
        compiled: xgr.CompiledGrammar,
        *,
        vocab_size: int,
        stop_token_ids: Sequence[int],
        executor: Executor | None = None,
        endings: EndingTokenizer | None = None,
        budget: int | None = None,
    ) -> None:
        self._matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=list(stop_token_ids) or None)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._vocab_size = vocab_size
        self._executor = executor
        self._pending: Future[torch.Tensor] | None = None
        self._ready: torch.Tensor | None = None
        self.is_failed = False
        #: Tokens the sequence may still generate; None when there is no budget to close within.
        self.budget = budget if endings is not None else None
        self._endings = endings
        # The ending from the current state; None when the grammar has none (nothing is forced then).
        self._ending: list[int] | None = ending_tokens(self._matcher, endings) if endings is not None else None
        self._vetted: tuple[int, list[int] | None] | None = None  # (token, ending after it) from vet
        #: The budget forced the ending: the output is complete but was cut short.
        self.was_closed = False
        self.prepare()

    @property
    def ending_length(self) -> int | None:
        """Tokens of the ending from the current state (0 when complete); None without a budget or an ending."""
        return None if self._ending is None else len(self._ending)

    @property
    def is_closing(self) -> bool:
        """The next tokens are the ending's: it takes every token left, or writing it has begun."""
        if self.budget is None or not self._ending or self.is_failed:
            return False
        return self.was_closed or len(self._ending) >= self.budget

    @property
    def is_closed(self) -> bool:
        """The budget forced the ending and it is written: the output is complete and ends here."""
        return self.was_closed and self._ending == []

    @property
    def is_terminated(self) -> bool:
        """The grammar is complete and a stop token was accepted."""
        return self._matcher.is_terminated()

    def prepare(self) -> None:
        """Start filling the next bitmask in the background (no-op if it is running or done)."""
        if self._ready is not None or self._pending is not None or self.is_failed or self.is_terminated:
            return
        if self.is_closing:
            return  # the mask is the ending's next token; nothing to fill
        if self._executor is None:
            return
        self._pending = self._executor.submit(self._fill)

    def wait(self) -> torch.Tensor | None:
        """The allowed-token bitmask for the next token, int32 [ceil(V / 32)]; None means no restriction."""
        if self.is_failed:
            return None
        if self.is_closing:
            assert self._ending is not None
            return _only(self._ending[0], self._vocab_size)
        if self._ready is None:
            if self._pending is not None:
                self._ready = self._pending.result()
                self._pending = None
            else:
                self._ready = self._fill()
        return self._ready

    def vet(self, token_id: int) -> int:
        """The token to keep for a sampled ``token_id``: itself, or the ending's next token if the budget needs it."""
        if self.budget is None or self._ending is None or self.is_failed or self.is_terminated:
            return token_id
        if self.is_closing:
            return self._force()
        if not self._ending:
            return token_id  # complete: only a stop token is allowed, and it ends the output
        self.close()  # no fill may read the matcher while it is forked
        after = self._matcher.fork()
        if not after.accept_token(token_id):
            return token_id  # accept() reports it
        assert self._endings is not None  # a budget comes with its endings
        ending = ending_tokens(after, self._endings)
        if ending is not None and len(ending) > self.budget - 1:
            return self._force()  # this token's state could not close in what would be left
        self._vetted = (token_id, ending)  # accept() takes it instead of walking again
        return token_id

    def _force(self) -> int:
        """Start (or go on) writing the ending; accept() then keeps the rest of it as the ending."""
        assert self._ending
        self.was_closed = True
        return self._ending[0]

    def accept(self, token_id: int) -> bool:
        """Advance past a sampled token and start on the next mask; False if the grammar refused it."""
        if self._pending is not None:  # never touch the matcher while a fill reads it
            self._pending.result()
            self._pending = None
        self._ready = None
        vetted, self._vetted = self._vetted, None
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
        if self.budget is not None:
            self._advance_ending(token_id, vetted)
        self.prepare()
        return True

    def _advance_ending(self, token_id: int, vetted: tuple[int, list[int] | None] | None) -> None:
        assert self.budget is not None and self._endings is not None
        self.budget -= 1
        if vetted is not None and vetted[0] == token_id:
            self._ending = vetted[1]
        elif self._ending and self._ending[0] == token_id:
            self._ending = self._ending[1:]  # the rest of an ending still ends the grammar
        else:
            self._ending = ending_tokens(self._matcher, self._endings)

    def close(self) -> None:
        """Wait for a fill in flight (the matcher is dropped after)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _fill(self) -> torch.Tensor:
        self._matcher.fill_next_token_bitmask(self._bitmask, 0)
        return self._bitmask[0].clone()


def _only(token_id: int, vocab_size: int) -> torch.Tensor:
    """A bitmask allowing ``token_id`` alone."""
    mask = torch.zeros(((vocab_size + 31) // 32,), dtype=torch.int32)
    word, bit = divmod(token_id, 32)
    mask[word] = torch.tensor(1 << bit, dtype=torch.int64).to(torch.int32)  # bit 31 is the sign bit of int32
    return mask


def prepare(constraints: Sequence[SequenceConstraint | None]) -> None:
    """Start the next bitmask of every constrained sequence in a batch (call before the forward pass)."""
    for constraint in constraints:
        if constraint is not None:
            constraint.prepare()


def apply_token_bitmask(logits: torch.Tensor, masks: torch.Tensor, rows: Sequence[int]) -> None:
    """Set to -inf, in place, the logits of ``rows`` whose bit is 0 in the matching row of ``masks``."""
    masks = masks.to(logits.device, non_blocking=True)
    xgr.apply_token_bitmask_inplace(logits, masks, vocab_size=logits.shape[-1], indices=list(rows))
