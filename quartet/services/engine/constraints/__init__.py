"""Grammar constraints: a token bitmask per step, computed on the CPU while the forward pass runs.

``spec.py`` turns a request's constraint into a grammar spec, ``compiler.py``
compiles it with xgrammar (cached), ``matcher.py`` walks one sequence through
it. The engine's seams: the sampler calls ``SequenceConstraint.wait()`` for each
constrained row and masks the logits; the loop calls ``accept(token_id)`` after
each token; ``prepare(batch)`` may be called before a forward pass.
"""

from quartet.services.engine.constraints.compiler import ConstraintCompiler, GrammarCache, compiler_message
from quartet.services.engine.constraints.matcher import SequenceConstraint, apply_token_bitmask, prepare
from quartet.services.engine.constraints.spec import GrammarKind, GrammarSpec, ToolCallFormat, grammar_spec

__all__ = [
    "ConstraintCompiler",
    "GrammarCache",
    "GrammarKind",
    "GrammarSpec",
    "SequenceConstraint",
    "ToolCallFormat",
    "apply_token_bitmask",
    "compiler_message",
    "grammar_spec",
    "prepare",
]
