"""Activation shaping: pure, out-of-place tensor functions on penultimate activations.

Every function accepts a torch tensor or a numpy array, either pooled features ``(N, D)`` or
feature maps ``(N, C, H, W)`` (shaped per sample over all ``C*H*W`` values), and returns a new
tensor in the input's dtype and on its device. The input is never modified. float16/bfloat16
inputs are computed in float32 and cast back.

Per-sample notation for the top-k family (ASH, SCALE): ``x`` the sample's ``n`` values,
``k = percentile_to_k(n, p)``, ``K`` the indices of the ``k`` largest values (exactly ``k``,
chosen by ``torch.topk``), ``S1 = sum(x)`` and ``S2 = sum(x[K])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from shapeood import _select, _threads
from shapeood._threads import for_row_chunks, scratch
from shapeood._validation import as_tensor, check_features, check_percentile

__all__ = [
    "ash_b",
    "ash_p",
    "ash_s",
    "class_row_mask",
    "dice_mask",
    "ish_shape",
    "lhact",
    "percentile_to_k",
    "react",
    "scale",
    "scale_factor",
    "top_k_mask",
]

LHACT_TH = 1.3520756840705868
LHACT_TL = 0.21940805315971373

# On accelerators rows are shaped in blocks of about this many values (the temporaries stay
# bounded, few kernel launches); on CPU every shaping and shaped_linear runs on row chunks in
# threads instead (shapeood._threads.for_row_chunks), and the CPU entry bounds the few
# remaining whole-block loops (top_k_mask, scale_factor). Measured at 2 threads on
# 50,000 x 2,048: 2^20-value blocks of torch ops made ASH-S 2.6x slower than 2^22-2^24 under
# contention (benchmarks/bench_shaping.py).
_BLOCK_VALUES = {"cpu": 1 << 24}
_BLOCK_VALUES_ACCELERATOR = 1 << 26
# shaped_linear's CPU chunks: each thread multiplies 2^21 values (1,024 rows of 2,048) at a
# time, shaped in sub-blocks of CHUNK_VALUES. The matmul of one thread streams the whole head
# per chunk, so short chunks starve it: at 2 threads on 50,000 x 2,048 with a 1,000-class
# head, ASH-S took 1.55x the whole matmul with 2^19-value matmul chunks and 1.45-1.50x with
# 2^20-2^22 (benchmarks/bench_shaping.py --chunk-sweep; the same run read SCALE 1.50x against
# 1.38-1.46x); before, with 2^19-value chunks, ASH-S read 1.53x and LHAct 1.24x.
MATMUL_CHUNK_VALUES = 1 << 21

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- internals


def percentile_to_k(n: int, percentile: float) -> int:
    """Number of values kept out of ``n``: ``k = n - round_half_even(n * p / 100)``.

    This is the released ASH/SCALE rule (numpy rounding of the float64 product), e.g.
    ``n = 2048``: p = 65 -> 717, p = 85 -> 307, p = 90 -> 205; ``n = 10``: p = 65 -> 4.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer (the number of values), got {n!r}")
    p = check_percentile(percentile)
    n = int(n)
    return n - round(n * p / 100.0)


def _require_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` when ``t`` holds NaN/inf (a cheap sum test first, exact test after)."""
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    if not bool(torch.isfinite(t.sum(dtype=acc))):
        # The sum is non-finite on NaN/inf or on overflow; the exact check tells them apart.
        check_features(t, name, ndims=(t.ndim,), finite=True)


def _checked(x: Any, name: str, ndims: tuple[int, ...] = (2, 4)) -> torch.Tensor:
    """Validate rank, emptiness and finiteness; return a floating tensor (no copy if possible)."""
    t = check_features(x, name, ndims=ndims, finite=False)
    _require_finite(t, name)
    return t


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def row_blocks(n_rows: int, n_values: int, device: torch.device) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: row blocks of about ``_BLOCK_VALUES`` values each."""
    block = _BLOCK_VALUES.get(device.type, _BLOCK_VALUES_ACCELERATOR)
    step = max(1, block // max(1, n_values))
    return [(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


_row_blocks = row_blocks


def _map_rows(
    t: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    """Apply ``fn(rows, dst)`` to row blocks of ``t`` viewed as ``(N, n)``.

    ``rows`` is a block in ``compute_dtype``; ``fn`` writes its result into ``dst`` (same shape
    and dtype as ``rows``) or returns it. The result has ``t``'s shape and dtype. On CPU the
    blocks are row chunks run in threads (``for_row_chunks``), elsewhere ``row_blocks``.
    """
    flat = t.reshape(t.shape[0], -1)
    out = torch.empty(flat.shape, dtype=t.dtype, device=t.device)

    def block(lo: int, hi: int) -> None:
        rows = flat[lo:hi].to(compute_dtype)
        block_out = out[lo:hi]
        dst = block_out if compute_dtype == t.dtype else torch.empty_like(rows)
        result = fn(rows, dst)
        if result is not None:
            block_out.copy_(result)
        elif dst is not block_out:
            block_out.copy_(dst)

    if t.device.type == "cpu":
        for_row_chunks(flat.shape[0], flat.shape[1], block)
    else:
        for lo, hi in _row_blocks(flat.shape[0], flat.shape[1], t.device):
            block(lo, hi)
    return out.view(t.shape)


def _k_for(t: torch.Tensor, percentile: float) -> int:
    n = t[0].numel()
    k = percentile_to_k(n, percentile)
    if k == 0:
        raise ValueError(
            f"percentile={percentile!r} keeps no value out of {n} per sample; "
            f"use a percentile below {100.0 * (1.0 - 0.5 / n):.4g}"
        )
    return k


def _safe_ratio(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``S1 / S2``, and 0 where ``S2 == 0`` (so that ``exp`` gives the neutral factor 1)."""
    zero = s2 == 0
    return torch.where(zero, torch.zeros_like(s1), s1 / torch.where(zero, torch.ones_like(s2), s2))


def top_k_mask(x: Any, percentile: float) -> torch.Tensor:
    """Boolean mask, same shape as ``x``, that is True on the ``k`` largest values of each sample.

    ``k = percentile_to_k(n, percentile)`` with ``n`` the values per sample; exactly ``k`` per
    sample (ties at the cut are broken by ``torch.topk``).
    """
    t = _checked(x, "x")
    k = _k_for(t, percentile)
    flat = t.reshape(t.shape[0], -1)
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=t.device)
    for lo, hi in _row_blocks(flat.shape[0], flat.shape[1], t.device):
        idx = flat[lo:hi].topk(k, dim=1, sorted=False).indices
        mask[lo:hi].scatter_(1, idx, True)
    return mask.view(t.shape)


# --------------------------------------------------------------------------- ASH and SCALE
# Row kernels ``kernel(rows, dst)``: shape a validated block ``rows`` (B, n) into ``dst`` (same
# shape and dtype). The public functions and the detectors (``shaped_linear``) share them.


def _topk_ash_p(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    values, idx = rows.topk(k, dim=1, sorted=False)
    dst.zero_().scatter_(1, idx, values)


def _topk_ash_b(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    idx = rows.topk(k, dim=1, sorted=False).indices
    fill = (rows.sum(dim=1, keepdim=True) / k).expand(-1, k)
    dst.zero_().scatter_(1, idx, fill)


def _topk_ash_s(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    values, idx = rows.topk(k, dim=1, sorted=False)
    s1 = rows.sum(dim=1, keepdim=True)
    s2 = values.sum(dim=1, keepdim=True)
    dst.zero_().scatter_(1, idx, values * torch.exp(_safe_ratio(s1, s2)))


_TOPK_KERNELS = {"ash_p": _topk_ash_p, "ash_b": _topk_ash_b, "ash_s": _topk_ash_s}


def _ash_rows(rows: torch.Tensor, dst: torch.Tensor, k: int, name: _select.Shape) -> None:
    """ASH ``name`` of a row block into ``dst``: the sorted cut on CPU, ``torch.topk`` elsewhere.

    Rows whose top-k set is ambiguous (ties at a non-zero cut) are shaped by ``torch.topk``
    either way, so every path keeps the same entries.
    """
    if not _select.sortable(rows):
        _TOPK_KERNELS[name](rows, dst, k)
        return
    redo = _select.cut_rows(rows, k, name, dst)[2]
    if bool(redo.any()):
        idx = redo.nonzero().squeeze(1)
        sub = rows.index_select(0, idx)
        shaped = torch.empty_like(sub)
        _TOPK_KERNELS[name](sub, shaped, k)
        dst.index_copy_(0, idx, shaped)


def ash_p_rows(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    """ASH-P of a row block into ``dst``."""
    _ash_rows(rows, dst, k, "ash_p")


def ash_b_rows(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    """ASH-B of a row block into ``dst``."""
    _ash_rows(rows, dst, k, "ash_b")


def ash_s_rows(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    """ASH-S of a row block into ``dst``."""
    _ash_rows(rows, dst, k, "ash_s")


def scale_rows(rows: torch.Tensor, dst: torch.Tensor, k: int) -> None:
    """SCALE of a row block into ``dst``."""
    torch.mul(rows, torch.exp(_scale_exponent(rows, k)), out=dst)


def _top_k_family(x: Any, percentile: float, kernel: Callable[..., None]) -> torch.Tensor:
    t = _checked(x, "x")
    k = _k_for(t, percentile)
    return _map_rows(t, lambda rows, dst: kernel(rows, dst, k), _compute_dtype(t.dtype))


def ash_p(x: Any, percentile: float = 65) -> torch.Tensor:
    """ASH-P (prune): ``y_i = x_i`` for ``i`` in ``K`` (the ``k`` largest values), else 0.

    >>> ash_p(torch.tensor([[1.0, 4.0, 2.0, 3.0]]), percentile=50)
    tensor([[0., 4., 0., 3.]])
    """
    return _top_k_family(x, percentile, ash_p_rows)


def ash_b(x: Any, percentile: float = 65) -> torch.Tensor:
    """ASH-B (binarise): ``y_i = S1 / k`` for ``i`` in ``K``, else 0 (the row sum is kept).

    An all-zero sample stays all zero.
    """
    return _top_k_family(x, percentile, ash_b_rows)


def ash_s(x: Any, percentile: float = 65) -> torch.Tensor:
    """ASH-S (scale): ``y_i = x_i * exp(S1 / S2)`` for ``i`` in ``K``, else 0.

    Where ``S2 == 0`` (e.g. an all-zero sample) the factor is 1, so such a sample stays zero
    (the reference code returns NaN there).
    """
    return _top_k_family(x, percentile, ash_s_rows)


def _scale_exponent(rows: torch.Tensor, k: int) -> torch.Tensor:
    """``S1 / S2`` per row (N, 1) of a block, 0 where ``S2 == 0``."""
    if _select.sortable(rows):
        s2 = _select.cut_rows(rows, k)[1].unsqueeze(1)
    else:
        s2 = rows.topk(k, dim=1, sorted=False).values.sum(dim=1, keepdim=True)
    s1 = rows.sum(dim=1, keepdim=True)
    return _safe_ratio(s1, s2)


def scale(x: Any, percentile: float = 85) -> torch.Tensor:
    """SCALE: ``y = x * exp(S1 / S2)`` on every value (nothing is pruned).

    ``S2`` does not depend on how ties are broken. Where ``S2 == 0`` (e.g. an all-zero sample)
    the factor is 1 and the sample is returned unchanged (the reference code returns NaN).
    """
    return _top_k_family(x, percentile, scale_rows)


def scale_factor(x: Any, percentile: float = 85, *, checked: bool = False) -> torch.Tensor:
    """SCALE's per-sample factor ``exp(S1 / S2)`` (N,), so that ``scale(x) = factor * x``.

    1 where ``S2 == 0``, as in ``scale``. Since the head is linear, the SCALE logits follow from
    the plain ones without a matmul: ``W scale(h) + b = factor * (W h) + b``. The result is in
    the input's dtype (float32 for float16/bfloat16 inputs, where the factor may overflow).
    ``checked=True`` skips the input checks for a tensor the caller validated.
    """
    t = x if checked else _checked(x, "x")
    k = _k_for(t, percentile)
    dtype = _compute_dtype(t.dtype)
    flat = t.reshape(t.shape[0], -1)
    out = torch.empty(flat.shape[0], dtype=dtype, device=t.device)
    for lo, hi in _row_blocks(flat.shape[0], flat.shape[1], t.device):
        out[lo:hi] = torch.exp(_scale_exponent(flat[lo:hi].to(dtype), k)).squeeze(1)
    return out


def shaped_linear(
    h: torch.Tensor,
    head: Any,
    kernel: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """``head(kernel(h))`` chunk by chunk, for validated float features (N, D).

    The shaped features are never materialised whole. On CPU, chunks of
    ``MATMUL_CHUNK_VALUES`` run in threads (``_threads.for_row_chunks``), each shaped in
    sub-blocks of ``CHUNK_VALUES`` and multiplied by the head at once; without a kernel the
    head runs as one matmul. Elsewhere row blocks run in turn through one reused buffer.
    ``kernel(rows, dst)`` writes the shaped rows into ``dst`` (None: the rows as they are);
    ``head.into(rows, out)`` writes ``rows @ W.T + b``.
    """
    out = torch.empty((h.shape[0], head.num_classes), dtype=h.dtype, device=h.device)
    if h.device.type == "cpu":
        if kernel is None:  # one matmul on every thread: the head's own speed
            return head.into(h, out)
        sub = max(1, _threads.CHUNK_VALUES // max(1, h.shape[1]))

        def work(lo: int, hi: int) -> None:
            rows = h[lo:hi]
            shaped = scratch("shaped_linear", tuple(rows.shape), rows.dtype)
            for start in range(0, hi - lo, sub):
                kernel(rows[start : start + sub], shaped[start : start + sub])
            head.into(shaped, out[lo:hi])

        for_row_chunks(h.shape[0], h.shape[1], work, MATMUL_CHUNK_VALUES)
        return out
    blocks = _row_blocks(h.shape[0], h.shape[1], h.device)
    buffer = torch.empty((blocks[0][1] - blocks[0][0], h.shape[1]), dtype=h.dtype, device=h.device)
    for lo, hi in blocks:
        rows = h[lo:hi]
        if kernel is not None:
            kernel(rows, buffer[: hi - lo])
            rows = buffer[: hi - lo]
        head.into(rows, out[lo:hi])
    return out


def top_k_kernel(name: str, k: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The row kernel of ``"ash_p"``, ``"ash_b"``, ``"ash_s"`` or ``"scale"`` for ``k``."""
    kernel = {"ash_p": ash_p_rows, "ash_b": ash_b_rows, "ash_s": ash_s_rows, "scale": scale_rows}[
        name
    ]
    return lambda rows, dst: kernel(rows, dst, k)


def k_for(h: torch.Tensor, percentile: float) -> int:
    """``k`` of the top-k family for the samples of ``h`` (error when it keeps nothing)."""
    return _k_for(h, percentile)


# --------------------------------------------------------------------------- clipping


def _finite_number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from err
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def react(x: Any, threshold: float) -> torch.Tensor:
    """ReAct: ``y = min(x, c)`` elementwise (upper clip at the threshold ``c``).

    >>> react(torch.tensor([[0.5, 1.5, 3.0]]), threshold=1.0)
    tensor([[0.5000, 1.0000, 1.0000]])
    """
    c = _finite_number(threshold, "threshold")
    t = _checked(x, "x")
    return torch.clamp(t, max=c)


def lhact(x: Any, th: float = LHACT_TH, tl: float = LHACT_TL) -> torch.Tensor:
    """LHAct: rectify extremely low and high activations (``tl < th``, ``n = 2``).

    ``u = max(x, tl)``; ``y = u`` if ``u < th`` else ``u / sqrt(1 + (u / th)^4) + tl``.
    The map jumps at ``th`` (left limit ``th``, value ``th / sqrt(2) + tl``), as in the
    reference code. ``u`` is clamped in the input dtype; the comparison and the formula run in
    float64 (on the values at or above ``th`` only) and the result is cast back.
    """
    th = _finite_number(th, "th")
    tl = _finite_number(tl, "tl")
    if not th > 0:
        raise ValueError(f"th must be positive, got {th!r}")
    if not tl < th:
        raise ValueError(f"tl must be smaller than th, got tl={tl!r}, th={th!r}")
    t = _checked(x, "x")
    return _map_rows(t, lhact_kernel(th, tl), t.dtype)


def _at_least(value: float, dtype: torch.dtype) -> float:
    """The smallest ``dtype`` number ``>= value``: for ``u`` of that dtype, ``u >= value`` (as
    doubles) exactly when ``u >= _at_least(value, dtype)``, a comparison done in ``dtype``."""
    if dtype == torch.float64:
        return value
    rounded = torch.tensor(value, dtype=torch.float64).to(dtype)
    if float(rounded) < value:
        rounded = torch.nextafter(rounded, torch.tensor(math.inf, dtype=dtype))
    return float(rounded)


def lhact_kernel(th: float, tl: float) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """LHAct's row kernel ``kernel(rows, dst)`` for checked ``th``/``tl``.

    ``u >= th`` is decided in ``u``'s dtype against ``th`` rounded up to it (the same set as
    the float64 comparison, without a float64 copy of the block); the upper branch runs in
    float64 on the selected values only. CPU float32/float64 blocks run in numpy, float32
    ones through :func:`_lhact_upper_float32`.
    """

    def block(rows: torch.Tensor, dst: torch.Tensor) -> None:
        u = torch.clamp(rows, min=tl, out=dst).view(-1)
        cut = _at_least(th, u.dtype)
        if _select.sortable(rows) and dst.is_contiguous():
            values = dst.numpy().reshape(-1)  # a view: dst is contiguous
            upper = np.flatnonzero(values >= values.dtype.type(cut))
            high = values[upper].astype(np.float64)
            if values.dtype == np.float32:
                values[upper] = _lhact_upper_float32(high, th, tl)
            else:
                values[upper] = high / np.sqrt(1.0 + (high / th) ** 4) + tl
            return
        upper = (u >= cut).nonzero().squeeze(1)
        high = u.index_select(0, upper).to(torch.float64)
        u.index_copy_(0, upper, (high / torch.sqrt(1.0 + (high / th) ** 4) + tl).to(u.dtype))

    return block


# Relative distance between the fast float64 upper branch and the reference's: at most about
# 15 double roundings (2^-49); float32 rounding is decided 2^9 times further out.
_LHACT_MARGIN = 2.0**-40


def _lhact_upper_float32(high: np.ndarray, th: float, tl: float) -> np.ndarray:
    """LHAct's upper branch ``u / sqrt(1 + (u / th)^4) + tl`` of float64 ``high``, rounded to
    float32 exactly as the reference's per-element double computation rounds it.

    ``(u / th)^4`` is two squarings of ``u * (1 / th)`` instead of ``pow`` (4x faster), so the
    double result ``y`` may differ from the reference's in its last bits, by a relative
    ``2^-49`` at most. Where ``y * (1 - 2^-40)`` and ``y * (1 + 2^-40)`` round to the same
    float32, the reference's value, which lies between them, rounds to it too (rounding is
    monotone); the rare others (about 1 in 40,000) are computed as the reference does, in
    Python floats.
    """
    q = high * (1.0 / th)
    np.multiply(q, q, out=q)
    np.multiply(q, q, out=q)
    q += 1.0
    np.sqrt(q, out=q)
    y = np.divide(high, q, out=q)
    y += tl
    below = (y * (1.0 - _LHACT_MARGIN)).astype(np.float32)
    result = (y * (1.0 + _LHACT_MARGIN)).astype(np.float32)
    for i in np.flatnonzero(below != result).tolist():
        u = float(high[i])
        result[i] = u / math.sqrt(1 + (u / th) ** 4) + tl
    return result


# --------------------------------------------------------------------------- weight masks


def _weight_matrix(weight: Any) -> torch.Tensor:
    return _checked(weight, "weight", ndims=(2,))


def dice_mask(weight: Any, mean_feature: Any, percentile: float) -> torch.Tensor:
    """DICE sparsification mask ``V > tau`` (bool, ``(C, D)``).

    ``V = m[None, :] * W`` (signed contributions of the mean ID feature ``m``) and
    ``tau = np.percentile(V, p)`` over all ``C * D`` entries (linear interpolation).
    """
    w = _weight_matrix(weight)
    p = check_percentile(percentile)
    m = as_tensor(mean_feature, "mean_feature")
    if m.ndim != 1 or m.shape[0] != w.shape[1]:
        raise ValueError(
            f"mean_feature must have shape ({w.shape[1]},) to match weight {tuple(w.shape)}, "
            f"got {tuple(m.shape)}"
        )
    m = m.to(torch.float32) if not m.is_floating_point() else m
    _require_finite(m, "mean_feature")
    dtype = _compute_dtype(w.dtype)
    w_np = w.detach().to(device="cpu", dtype=dtype).numpy()
    m_np = m.detach().to(device="cpu", dtype=dtype).numpy()
    contribution = m_np[None, :] * w_np
    tau = np.percentile(contribution, p)
    return torch.from_numpy(contribution > tau).to(w.device)


def class_row_mask(weight: Any, percentile: float) -> torch.Tensor:
    """HIMPLoS head mask (bool, ``(C, D)``): ``W[c, j] >= np.percentile(W[c, :], p)``.

    Row ``c`` keeps the signed weights of class ``c`` at or above its ``p``-th percentile
    (linear interpolation), so ``p = 30`` keeps about 70% of each row. ``p`` may be 100.
    """
    w = _weight_matrix(weight)
    p = check_percentile(percentile, upper_inclusive=True)
    w_np = w.detach().to(_compute_dtype(w.dtype)).cpu().numpy()
    tau = np.percentile(w_np, p, axis=1, keepdims=True)
    return torch.from_numpy(w_np >= tau).to(w.device)


# --------------------------------------------------------------------------- ISH


def check_ish_percentile(percentile: float) -> float:
    """ISH's percentile, in percent in [0, 100) like every percentile (the shared check)."""
    return check_percentile(percentile, "ISH percentile")


def ish_kept(width: int, percentile: float) -> int:
    """Entries ISH keeps per sample: ``k = floor(width * (1 - percentile / 100))``.

    ISH's own rule (not :func:`percentile_to_k`); ``percentile / 100`` is the same double as
    the fraction the original code takes (``85 / 100 == 0.85``), so ``k`` matches it exactly.
    """
    return int(width * (1.0 - float(percentile) / 100.0))


def ish_shape(h: Any, percentile: float = 85) -> torch.Tensor:
    """ISH reshaped activation used for the weight gradient (``minksample_expscale``).

    ``p`` in percent, [0, 100). Per sample: ``k = floor(D * (1 - p/100))``, ``K`` the indices of
    the ``k`` largest ``|h_i|``, ``S1 = sum(h)`` (signed), ``S2 = sum(|h[K]|)``;
    ``y_i = |h_i| * exp(S1 / S2)`` for ``i`` in ``K``, else 0 (factor 1 where ``S2 == 0``).
    """
    t = _checked(h, "h", ndims=(2,))
    p = check_ish_percentile(percentile)
    d = t.shape[1]
    k = ish_kept(d, p)
    if k == 0:
        raise ValueError(f"percentile={p!r} keeps no value out of {d}; lower it")

    def block(rows: torch.Tensor, dst: torch.Tensor) -> None:
        values, idx = rows.abs().topk(k, dim=1, sorted=False)
        s1 = rows.sum(dim=1, keepdim=True)
        s2 = values.sum(dim=1, keepdim=True)
        dst.zero_().scatter_(1, idx, values * torch.exp(_safe_ratio(s1, s2)))

    return _map_rows(t, block, _compute_dtype(t.dtype))
