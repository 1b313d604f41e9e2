"""Progress output: one line per stage and one bar per long loop, on stderr.

On a terminal a bar is a live ``tqdm`` bar (name, images/s, ETA). When stderr is not a terminal
(a log file, CI, a pipe) the same bar prints plain log lines instead, with no carriage returns:
one when it starts, at most one every ``LOG_EVERY_S`` seconds, and one when it ends::

    [   3.1s] extract cifar10_test: 2048/10000 img (20%), 412.7 img/s, ETA 19s

Everything here is silenced by ``set_quiet(True)`` (the CLI's ``--quiet``) or by the ``quiet=``
argument of a call. The module imports nothing heavy (tqdm only when a bar is drawn).

    from shapeood import progress
    progress.stage("fit react on ID train (400 images)")
    with progress.bar(total=len(ds), desc="extract cifar10_test") as b:
        for images, _ in loader:
            ...
            b.update(len(images))
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LOG_EVERY_S = 10.0

_QUIET = False
_START = time.perf_counter()


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every stage line and bar of the process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress output is silenced process-wide."""
    return _QUIET


def active(progress: bool | None = True, quiet: bool | None = None) -> bool:
    """Whether to show progress: ``progress`` wanted, not ``quiet`` (call or process-wide)."""
    if quiet is None:
        quiet = _QUIET
    return bool(progress) and not quiet


def _stream() -> TextIO:
    return sys.stderr


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def _elapsed() -> str:
    return f"[{time.perf_counter() - _START:7.1f}s]"


def _duration(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; ``3.4`` -> ``3s``; ``4000`` -> ``1h06m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def stage(message: str, *, quiet: bool | None = None) -> None:
    """Print one stage line (``[  12.3s] fit react on ID train``) unless quiet."""
    if not active(True, quiet):
        return
    line = f"{_elapsed()} {message}"
    stream = _stream()
    if _is_terminal(stream) and _LIVE_BARS:
        from tqdm.auto import tqdm

        tqdm.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)


class LogBar:
    """A ``tqdm``-compatible bar for a non-terminal stream: plain lines, no ``\\r``.

    Supports the part of tqdm's interface the package uses: ``update``, ``close``,
    ``set_postfix_str``, ``n``, ``total`` and use as a context manager.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "img",
        stream: TextIO | None = None,
        every_s: float = LOG_EVERY_S,
    ) -> None:
        self.total = None if total is None else int(total)
        self.desc = desc
        self.unit = unit
        self.n = 0
        self._stream = stream or _stream()
        self._every = float(every_s)
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._postfix = ""
        self._closed = False
        self._emit(f"{self.desc}: start, {self._count()}")

    def _count(self) -> str:
        if self.total is None:
            return f"{self.n} {self.unit}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"{self.n}/{self.total} {self.unit}{pct}"

    def _emit(self, text: str) -> None:
        extra = f", {self._postfix}" if self._postfix else ""
        print(f"{_elapsed()} {text}{extra}", file=self._stream, flush=True)

    def _status(self) -> str:
        spent = time.perf_counter() - self._t0
        rate = self.n / spent if spent > 0 else 0.0
        text = f"{self.desc}: {self._count()}, {rate:.1f} {self.unit}/s"
        if self.total and 0 < self.n < self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.n) / rate)}"
        return text

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self._last >= self._every:
            self._last = now
            self._emit(self._status())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self._postfix = str(text)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        spent = time.perf_counter() - self._t0
        rate = self.n / spent if spent > 0 else 0.0
        self._emit(
            f"{self.desc}: done, {self._count()} in {_duration(spent)} ({rate:.1f} {self.unit}/s)"
        )

    def __enter__(self) -> LogBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullBar:
    """A bar that shows nothing (quiet)."""

    def __init__(self, total: int | None = None, **_: Any) -> None:
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_LIVE_BARS: list[Any] = []


class _LiveBar:
    """A ``tqdm`` bar that stage lines know about (so they print above it, not through it)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        _LIVE_BARS.append(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:
        if self in _LIVE_BARS:
            _LIVE_BARS.remove(self)
        self._inner.close()

    def __enter__(self) -> _LiveBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(
    total: int | None,
    desc: str,
    unit: str = "img",
    *,
    progress: bool | None = True,
    quiet: bool | None = None,
) -> Any:
    """A progress bar over ``total`` items (``update(n)``, ``close()``, context manager).

    A live tqdm bar on a terminal (``desc``, count, ``unit``/s, ETA), plain log lines
    otherwise, nothing when ``progress`` is false or quiet.
    """
    if not active(progress, quiet):
        return NullBar(total)
    stream = _stream()
    if not _is_terminal(stream):
        return LogBar(total, desc, unit, stream)
    from tqdm.auto import tqdm

    return _LiveBar(
        tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream, dynamic_ncols=True)
    )
