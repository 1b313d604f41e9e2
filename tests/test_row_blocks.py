"""Row-blocked shaping + head (``shaping.shaped_linear``, HIMPLoS's one pass) on ragged blocks,
and on ragged CPU chunks run in threads."""

from __future__ import annotations

import pytest
import torch

from shapeood import LinearHead, _threads, shaping
from shapeood.detectors import create_detector

N, D, C = 41, 32, 7
PARAMS = {
    "ash_p": {"percentile": 65},
    "ash_b": {"percentile": 80},
    "ash_s": {"percentile": 90},
    "scale": {"percentile": 85},
    "react": {"percentile": 90},
    "lhact": {"th_percentile": 95, "tl_percentile": 35},
    "himplos": {"percentile": 60, "threshold": 1.0},
}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    head = LinearHead(torch.randn(C, D, generator=g), torch.randn(C, generator=g))
    train = torch.relu(torch.randn(200, D, generator=g))
    test = torch.relu(torch.randn(N, D, generator=g))
    test[5] = 0.0
    return head, train, torch.arange(200) % C, test


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("plain", [False, True])
def test_blocks_of_any_size_give_the_same_scores(name, plain, data, monkeypatch):
    head, train, labels, test = data
    det = create_detector(name, **PARAMS[name]).fit(head, train, labels)
    z = head(test) if plain else None
    whole = det.score(test, plain_logits=z), det.predict(test, plain_logits=z)
    monkeypatch.setitem(shaping._BLOCK_VALUES, "cpu", 4 * D)  # 4 rows a block, last one ragged
    assert len(shaping.row_blocks(N, D, test.device)) == 11
    monkeypatch.setattr(_threads, "CHUNK_VALUES", 3 * D)  # 3 rows a chunk, in threads
    monkeypatch.setattr(shaping, "MATMUL_CHUNK_VALUES", 8 * D)  # 8-row matmuls of 3+3+2 rows
    monkeypatch.setattr(_threads, "INLINE_VALUES", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blocked = det.score(test, plain_logits=z), det.predict(test, plain_logits=z)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(blocked[0], whole[0], rtol=1e-6, atol=1e-6)
    assert torch.equal(blocked[1], whole[1])


def test_shaped_linear_equals_shape_then_head(data, monkeypatch):
    head, _, _, test = data
    monkeypatch.setitem(shaping._BLOCK_VALUES, "cpu", 5 * D)
    k = shaping.k_for(test, 65)
    for name, fn in (("ash_p", shaping.ash_p), ("ash_s", shaping.ash_s), ("scale", shaping.scale)):
        got = shaping.shaped_linear(test, head, shaping.top_k_kernel(name, k))
        torch.testing.assert_close(got, head(fn(test, 65)), rtol=1e-6, atol=1e-5)


def test_small_work_runs_on_one_thread_and_restores_the_count(data):
    from shapeood._threads import SMALL_WORK, single_threaded_below

    before = torch.get_num_threads()
    with single_threaded_below(10):
        inside_small = torch.get_num_threads()
    with single_threaded_below(SMALL_WORK):
        inside_large = torch.get_num_threads()
    assert inside_small == 1 and inside_large == before == torch.get_num_threads()
    head, train, labels, test = data
    det = create_detector("ash_s", percentile=90).fit(head, train, labels)
    torch.set_num_threads(max(2, before))
    try:
        scores = det.score(test)
        assert torch.get_num_threads() == max(2, before)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(scores, det.score(test))


def test_scratch_buffers_are_reused_per_thread_and_key(monkeypatch):
    first = _threads.scratch("a", (4, 8), torch.float32)
    again = _threads.scratch("a", (2, 8), torch.float32)
    assert again.data_ptr() == first.data_ptr() and again.shape == (2, 8)
    assert _threads.scratch("b", (4, 8), torch.float32).data_ptr() != first.data_ptr()
    assert _threads.scratch("a", (4, 8), torch.float64).data_ptr() != first.data_ptr()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(lambda: _threads.scratch("a", (4, 8), torch.float32).data_ptr())
    assert other.result() != first.data_ptr()
    monkeypatch.setattr(_threads, "SCRATCH_VALUES", 16)
    big = _threads.scratch("big", (4, 8), torch.float32)
    assert big.shape == (4, 8)
    assert _threads.scratch("big", (4, 8), torch.float32).data_ptr() != big.data_ptr()
