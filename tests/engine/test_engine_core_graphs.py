"""The CUDA-graph decode path's static buffers, checked on CPU with capture off.

Capturing needs a GPU (untested here); everything around it — copying a step
into static buffers, padding the batch to its bucket through a scratch block,
gathering a fixed power-of-two number of blocks — runs the same with capture
off and must give the eager path's logits.
"""

from __future__ import annotations

import torch

from quartet.services.engine.runner.cuda_graphs import batch_buckets
from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.runner.base import RunnerOptions
from tests.engine.runner_steps import Steps


def test_buckets_cover_every_batch_size() -> None:
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(40) == [1, 2, 4, 8, 16, 32, 40]
    assert batch_buckets(1) == [1]


def test_static_buffer_decode_matches_eager_decode() -> None:
    directory = ensure_bundled_model(quiet=True)
    options = RunnerOptions(num_kv_blocks=40, block_size=4, max_num_seqs=4, weight_format="bf16")
    eager = NativeRunner.load(directory, options)
    graphed = NativeRunner.load(directory, options)
    graphed.enable_decode_graphs(capture=False)
    assert graphed.kv_layout.num_blocks == 39 and graphed.info.context_length == 39 * 4
    prompts = [[1, 4093, 198, 19556, 905], [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173], [1, 28, 638]]
    outputs = []
    for runner in (eager, graphed):
        steps = Steps(runner)
        seqs = [steps.sequence(p) for p in prompts]
        logits = steps.run([(s, None) for s in seqs])
        rows = []
        for _ in range(6):  # three sequences: a bucket of 4 with one padding row; widths cross block boundaries
            for seq, token in zip(seqs, logits.argmax(-1).tolist()):
                steps.feed(seq, token)
            logits = steps.run([(s, 1) for s in seqs])
            rows.append(logits)
        outputs.append(torch.stack(rows))
        assert max(s.num_tokens for s in seqs) > 4 * 3  # the gather width grew past a power of two of blocks
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-3
    assert eager.cache.keys[0][39].abs().sum() == 0  # eager never writes the block graphs reserve...
    assert graphed.cache.keys[0][39, 0].abs().sum() > 0  # ...where the padding row's KV went


def test_padded_prefill_path_matches_eager_prefill_and_the_decode_after_it() -> None:
    """One prompt padded to its bucket (pads' K/V in the scratch block): same logits, same KV for decoding on."""
    from quartet.services.engine.runner.prefill_graphs import prompt_buckets

    assert prompt_buckets(100) == [16, 32, 64, 128] and prompt_buckets(16) == [16]
    directory = ensure_bundled_model(quiet=True)
    options = RunnerOptions(num_kv_blocks=40, block_size=4, max_num_seqs=2, weight_format="bf16")
    eager = NativeRunner.load(directory, options)
    graphed = NativeRunner.load(directory, options)
    graphed.enable_decode_graphs(capture=False)
    prompts = [[1, 4093, 198, 19556, 905], [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173] * 2, [1, 28]]
    for prompt in prompts:
        results = []
        for runner in (eager, graphed):
            steps = Steps(runner)
            seq = steps.sequence(prompt)
            first = steps.run([(seq, None)])
            steps.feed(seq, int(first.argmax(-1)))
            results.append((first, steps.run([(seq, 1)])))
            steps.free(seq)
        (eager_first, eager_next), (padded_first, padded_next) = results
        assert padded_first.shape == eager_first.shape == (1, eager.info.vocab_size)
        assert (eager_first - padded_first).abs().max().item() < 1e-3
        assert (eager_next - padded_next).abs().max().item() < 1e-3
    assert graphed._prefill is not None and not graphed._prefill._failed


def test_staging_grows_past_its_capacity_and_keeps_values() -> None:
    """A step longer than the staging buffer (a long block table) grows it instead of truncating."""
    from quartet.services.engine.runner.cuda_graphs import Staging

    staging = Staging(4, torch.device("cpu"))
    assert staging.upload([7, 8, 9]).tolist() == [7, 8, 9]
    values = list(range(100, 111))
    assert staging.upload(values).tolist() == values
    assert staging.upload([1]).tolist() == [1]


def test_decode_longer_than_every_graph_width_runs_eagerly_and_matches() -> None:
    """With a fixed width smaller than a sequence's blocks, that step is refused by the graphs and runs eagerly."""
    directory = ensure_bundled_model(quiet=True)
    options = RunnerOptions(num_kv_blocks=40, block_size=4, max_num_seqs=2, weight_format="bf16")
    eager = NativeRunner.load(directory, options)
    graphed = NativeRunner.load(directory, options)
    graphed.enable_decode_graphs(capture=False)
    assert graphed._graphs is not None
    graphed._graphs.fixed_width = 2  # 8 tokens: the prompt below outgrows it
    prompt = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173]
    rows = []
    for runner in (eager, graphed):
        steps = Steps(runner)
        seq = steps.sequence(prompt)
        steps.feed(seq, int(steps.run([(seq, None)]).argmax(-1)))
        rows.append(steps.run([(seq, 1)]))
    assert graphed._graphs._key(1, len(prompt) + 1) is None
    assert (rows[0] - rows[1]).abs().max().item() < 1e-3


def test_eager_steps_land_on_the_shapes_the_decode_graphs_compiled() -> None:
    """On CUDA an eager step pads its logits rows to a decode bucket and its block tables to a width of a
    multiple of 16: Triton compiles per row count's divisibility and per table stride, and a compile
    mid-serving stalled a step for up to a second."""
    from quartet.services.engine.layers.attention import AttentionMetadata
    from quartet.services.engine.runner.native import _bucket

    assert [_bucket(n) for n in (1, 2, 3, 5, 8, 9, 16, 17, 264)] == [1, 2, 4, 8, 8, 16, 16, 32, 272]
    assert all(_bucket(n) in batch_buckets(256) or _bucket(n) % 16 == 0 for n in range(1, 300))
    meta = AttentionMetadata.build(query_lens=[3, 1], seq_lens=[3, 20], block_tables=[[5], [1, 2]], block_size=16,
                                   width_multiple=16)  # fmt: skip
    assert meta.block_tables.shape == (2, 16) and meta.block_tables.stride(0) == 16
    assert meta.block_tables[1, :2].tolist() == [1, 2] and meta.block_tables[0, 1:].eq(0).all()
    assert meta.seq_lens_tensor.tolist() == [3, 20] and meta.slot_mapping.tolist() == [80, 81, 82, 35]
    # Every part 16-byte aligned (Triton specializes on pointer alignment), also after an odd token count.
    odd = AttentionMetadata.build(query_lens=[3, 1, 1], seq_lens=[3, 20, 7], block_tables=[[5], [1, 2], [3]],
                                  block_size=16, width_multiple=16)  # fmt: skip
    parts = (odd.positions, odd.slot_mapping, odd.block_tables, odd.seq_lens_tensor)
    assert all(t.data_ptr() % 16 == 0 for t in parts)
    assert odd.slot_mapping.tolist() == [80, 81, 82, 35, 54] and odd.seq_lens_tensor.tolist() == [3, 20, 7]
