"""The sorted top-k cut (``shapeood._select``) against ``torch.topk``, and the chunk runner."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from shapeood import _select, _threads, shaping


@pytest.fixture
def threaded_chunks(monkeypatch):
    """Chunks of 5 rows, run in 2 pool threads whatever the size."""
    monkeypatch.setattr(_threads, "CHUNK_VALUES", 5 * 64)
    monkeypatch.setattr(_threads, "INLINE_VALUES", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _rows(kind: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    x = torch.relu(torch.randn(37, 64, generator=g)).to(dtype)
    if kind == "signed":
        x = torch.randn(37, 64, generator=g).to(dtype)
    elif kind == "ties":  # values on a coarse grid: ties at non-zero cuts in most rows
        x = torch.round(x * 2) / 2
    elif kind == "zero_cut":  # fewer non-zeros than k: the cut is 0 and tied
        x[:, 8:] = 0
    elif kind == "constant":
        x[:] = 1.5
    return x


KINDS = ["relu", "signed", "ties", "zero_cut", "constant"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["ash_p", "ash_b", "ash_s"])
@pytest.mark.parametrize("k", [1, 13, 63, 64])
def test_sorted_cut_shapes_exactly_like_topk(kind, name, k, threaded_chunks):
    x = _rows(kind)
    expected = torch.empty_like(x)
    shaping._TOPK_KERNELS[name](x, expected, k)
    got = torch.empty_like(x)
    shaping._ash_rows(x, got, k, name)
    assert torch.equal(got != 0, expected != 0)  # the same kept entries
    if name == "ash_p":  # kept values are copied: bit for bit
        assert torch.equal(got, expected)
    elif kind == "signed":  # S1 may nearly cancel: only the per-row fill/factor to 1e-3
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3 * float(x.abs().max()))
    else:  # S1 and S2 are summed in another order
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert ((got != 0).sum(1) <= k).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_cut_and_kept_sum(dtype, kind, threaded_chunks):
    x, k = _rows(kind, dtype), 13
    cut, top, _ = _select.cut_rows(x, k)
    values = x.topk(k, dim=1).values
    assert cut.dtype == dtype and torch.equal(cut, values[:, -1])
    torch.testing.assert_close(top, values.sum(1))


def test_redo_marks_exactly_the_ambiguous_rows():
    x = torch.tensor([[3.0, 2.0, 2.0, 1.0], [3.0, 2.0, 1.0, 0.5], [1.0, 0.0, 0.0, 0.0]])
    assert _select.cut_rows(x, 2)[2].tolist() == [True, False, True]  # no shape: the ties
    assert _select.cut_rows(x, 2, "ash_p", torch.empty_like(x))[2].tolist() == [
        True,  # 2.0 twice at the cut: topk picks one
        False,
        False,  # a tie at a zero cut keeps zeros either way
    ]
    assert _select.cut_rows(x, 2, "ash_b", torch.empty_like(x))[2].tolist() == [True, False, True]


def test_overflowing_ash_s_factor_falls_back_to_topk():
    x = torch.linspace(1.0, 1.01, 400).repeat(2, 1)  # k = 1: S1 / S2 = ~400, exp overflows
    assert not torch.isfinite(torch.exp(x.sum(1) / x.max(1).values)).any()
    expected = torch.empty_like(x)
    shaping._topk_ash_s(x, expected, 1)
    got = torch.empty_like(x)
    shaping._ash_rows(x, got, 1, "ash_s")
    assert torch.equal(got, expected)  # inf on the kept entry, 0 elsewhere (never 0 * inf)
    assert torch.isinf(got).sum() == 2 and not torch.isnan(got).any()


def test_autograd_and_other_devices_take_topk():
    x = torch.rand(4, 16, requires_grad=True)
    assert not _select.sortable(x)
    assert not _select.sortable(torch.rand(4, 16, dtype=torch.float16))
    y = shaping.ash_s(x, 50)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        assert _select.sortable(x)


def test_public_functions_equal_the_topk_path(threaded_chunks):
    g = torch.Generator().manual_seed(5)
    x = torch.relu(torch.randn(50, 3, 4, 4, generator=g))
    flat = x.reshape(50, -1)
    k = shaping.percentile_to_k(48, 80)
    for name, fn in (("ash_p", shaping.ash_p), ("ash_b", shaping.ash_b), ("ash_s", shaping.ash_s)):
        expected = torch.empty_like(flat)
        shaping._TOPK_KERNELS[name](flat, expected, k)
        torch.testing.assert_close(fn(x, 80).reshape(50, -1), expected, rtol=1e-6, atol=1e-6)
    s2 = flat.topk(k, dim=1).values.sum(1, keepdim=True)
    factor = torch.exp(flat.sum(1, keepdim=True) / s2)
    torch.testing.assert_close(shaping.scale(x, 80).reshape(50, -1), flat * factor)
    torch.testing.assert_close(shaping.scale_factor(x, 80), factor.squeeze(1))


def test_chunks_run_in_threads_nest_inline_and_restore_the_thread_count(threaded_chunks):
    seen: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def inner(lo: int, hi: int) -> None:
        with lock:
            seen.append((threading.current_thread().name, lo, hi))

    def outer(lo: int, hi: int) -> None:
        assert torch.get_num_threads() == 1  # chunks run their torch ops on one thread
        _threads.for_row_chunks(hi - lo, 64, inner)  # nested: inline, no deadlock

    _threads.for_row_chunks(23, 64, outer)
    assert torch.get_num_threads() == 2
    assert all(name.startswith("shapeood-chunks") for name, _, _ in seen)
    assert sum(hi - lo for _, lo, hi in seen) == 23

    def failing(lo: int, hi: int) -> None:
        raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        _threads.for_row_chunks(23, 64, failing)
    assert torch.get_num_threads() == 2


def test_numpy_and_torch_chunks_of_himplos_agree():
    from shapeood import LinearHead
    from shapeood.detectors import create_detector

    g = torch.Generator().manual_seed(2)
    head = LinearHead(torch.randn(6, 24, generator=g), torch.randn(6, generator=g))
    train = torch.relu(torch.randn(60, 24, generator=g))
    det = create_detector("himplos", percentile=40, threshold=0.9)
    det.fit(head, train, torch.arange(60) % 6)
    test = torch.relu(torch.randn(30, 24, generator=g))
    test[3] = 0.0
    via_numpy, via_torch = torch.empty(30, 6), torch.empty(30, 6)
    det._chunk(test, None, via_numpy, det._numpy_parts(test.dtype))
    det._chunk(test, None, via_torch)
    torch.testing.assert_close(via_numpy, via_torch, rtol=1e-6, atol=1e-6)
    assert np.isfinite(via_numpy.numpy()).all()
