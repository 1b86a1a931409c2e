"""Progress bars on standard error for the commands that run for seconds (``crosscheck``,
``train --overfit-batch``, ``import``, ``graph``).

A bar is drawn with tqdm, imported only here and only when a bar is drawn: when the stream
is a terminal, the command was not given ``-q`` and tqdm is installed (it is optional:
without it the commands run without a bar). Otherwise every method does nothing, so the
callers report progress unconditionally. The bar is erased when it closes, so that the
report printed after it stands alone.
"""

from __future__ import annotations

import sys


class Progress:
    """No bar: the interface of :class:`_Bar`, doing nothing."""

    def stage(self, text: str, total: int | None = None) -> None:
        """Start a stage: ``text`` describes it, ``total`` counts its steps (None: unknown)."""

    def advance(self, n: int = 1, **postfix) -> None:
        """``n`` steps done; ``postfix`` (``loss=0.31``) is shown after the bar."""

    def close(self) -> None:
        """Erase the bar."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Bar(Progress):
    def __init__(self, tqdm, stream, unit: str):
        self._tqdm = tqdm
        self._stream = stream
        self._unit = unit
        self._bar = None
        self._ticking = None

    def stage(self, text: str, total: int | None = None) -> None:
        self.close()
        fmt = None if total else "{desc}: {elapsed}"  # a step count means nothing here
        self._bar = self._tqdm(total=total, desc=text, unit=self._unit, file=self._stream,
                               leave=False, dynamic_ncols=True, mininterval=0.2,
                               bar_format=fmt)
        self._bar.refresh()
        if not total:  # nothing advances it: keep its clock going
            import threading

            stop = threading.Event()
            bar = self._bar
            thread = threading.Thread(target=_keep_fresh, args=(bar, stop), daemon=True)
            thread.start()
            self._ticking = (stop, thread)

    def advance(self, n: int = 1, **postfix) -> None:
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._ticking is not None:
            stop, thread = self._ticking
            stop.set()
            thread.join()
            self._ticking = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _keep_fresh(bar, stop) -> None:
    while not stop.wait(0.5):
        bar.refresh()


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def progress(enabled: bool = True, unit: str = "layer", stream=None) -> Progress:
    """A bar on ``stream`` (standard error) when ``enabled`` and the stream is a terminal
    and tqdm is installed; else a :class:`Progress` that draws nothing."""
    stream = sys.stderr if stream is None else stream
    if not enabled or not _is_terminal(stream):
        return Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        return Progress()
    return _Bar(tqdm, stream, unit)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Counted(list):
    """A list that calls ``tick()`` after each item a loop over it has used: a backend's
    plan, walked forwards (``for``), backwards (``reversed``) or by index, reports each
    layer it has run."""

    def __init__(self, items, tick):
        super().__init__(items)
        self._tick = tick

    def __iter__(self):
        for item in super().__iter__():
            yield item
            self._tick()

    def __reversed__(self):
        for item in super().__reversed__():
            yield item
            self._tick()

    def __getitem__(self, i):
        item = super().__getitem__(i)
        if isinstance(i, int) and i > 0:
            self._tick()  # reading step i means step i - 1 is done
        return item
