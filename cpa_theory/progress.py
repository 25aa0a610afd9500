"""What a person sees during long runs: progress bars on stderr, and Ctrl-C that ends cleanly.

Bars are drawn with rich on **stderr only, and only when stderr is a terminal**: piped or redirected runs
(``reproduce > out.txt``, ``--json | jq``) never get bar frames in their output.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["show_progress", "track", "interrupts_deferred"]


def show_progress(requested: bool = True) -> bool:
    """Draw bars only when asked and when stderr is a terminal."""
    try:
        return bool(requested) and sys.stderr.isatty()
    except (AttributeError, ValueError):  # stderr replaced or closed
        return False


def track(items, description: str, *, total: int | None = None, done: int = 0, unit: str = "done",
          requested: bool = True):
    """Yield ``items``; with a terminal on stderr, show a bar labelled ``description: k/total done``.

    ``total``/``done`` count work finished earlier (a resumed run): the label counts every finished item,
    updated as each one completes.
    """
    if not show_progress(requested):
        yield from items
        return
    if total is None:  # a generator given with its total (e.g. as_completed) is consumed lazily, never listed
        items = list(items)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    total = len(items) + done if total is None else total
    label = lambda k: f"{description}: {k}/{total} {unit}"  # noqa: E731
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label(done), total=total, completed=done)
        for k, item in enumerate(items, start=done + 1):
            yield item
            bar.update(task, completed=k, description=label(k))


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt.

    XLA compiles and runs on its own thread pool. A KeyboardInterrupt that abandons a jitted call mid-way
    leaves a compile job running, and the interpreter then segfaults at exit when that job touches the freed
    client (seen in ``xla::ifrt::SingleDeviceSharding::Create``). Wrapping each JAX call lets it finish
    (seconds) before the interrupt is delivered. Outside the main thread this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
        raise KeyboardInterrupt
