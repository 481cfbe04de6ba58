"""Progress of long evaluation work (drawing samples, solving observation tasks, timing latency): minutes
at full scale, all of it inside one Lightning batch, so Lightning's bar stands still.

A callback names the work and switches bars on (:func:`shown`, on rank 0 when the trainer shows its own
bar); the code that does it opens a bar with :func:`bar` (``GeneratorModule.sample_with``: one tick per
sample) and reports finer steps with :func:`note` (samplers: ``step i/N``; noise optimisation:
``iteration i/N``). A bar opened inside another stays silent, so an outer bar (latency timing, one tick
per timed call) is not moved by the sampling it times. Without :func:`shown` every call is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

from tqdm.auto import tqdm

_label: ContextVar[str | None] = ContextVar("pdegen_progress_label", default=None)
_bar: ContextVar[tqdm | bool | None] = ContextVar("pdegen_progress_bar", default=None)  # False: silenced


@contextmanager
def shown(label: str, enabled: bool = True) -> Iterator[None]:
    """Bars opened in the block show, described by ``label`` (none when not ``enabled``)."""
    token = _label.set(label if enabled else None)
    try:
        yield
    finally:
        _label.reset(token)


@contextmanager
def bar(total: int | None, unit: str) -> Iterator[None]:
    """A bar of ``total`` ``unit``\\ s for the block, if :func:`shown` asks for one and no bar is open."""
    label, outer = _label.get(), _bar.get()
    if label is not None and outer is None:
        opened = tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True)
    else:  # nothing asked for, or inside another bar: silence what the block reports
        opened = nullcontext(False if outer is not None else None)
    with opened as current:
        token = _bar.set(current)
        try:
            yield
        finally:
            _bar.reset(token)


def advance(count: int = 1) -> None:
    """Move the open bar by ``count`` units."""
    current = _bar.get()
    if current:
        current.update(count)


def note(text: str) -> None:
    """Show ``text`` (e.g. ``step 3/18``) beside the open bar, redrawn at tqdm's usual rate."""
    current = _bar.get()
    if current:
        current.set_postfix_str(text, refresh=False)
        current.update(0)
