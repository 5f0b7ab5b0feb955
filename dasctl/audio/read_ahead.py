"""ReadAhead: a block producer run on its own thread, ahead of its consumer (a second core decodes while
the first resamples and encodes)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")

_END = object()


class ReadAhead(Generic[Item]):
    """Runs a producer in a thread, `depth` items ahead (0: no bound); errors surface in the consumer.

    Only for regular files: a read from one never blocks for long, so stop() can wait for the thread
    to finish its current block, and the file is never closed under a read in progress.
    """

    def __init__(self, blocks: Iterator[Item], depth: int = 2, name: str = "dasctl-audio-read") -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._blocks = blocks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for block in self._blocks:
                while not self._stop.is_set():
                    try:
                        self._queue.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            self._queue.put(error)

    def items(self) -> Iterator[Item]:
        """What the producer made, in order; leaving this loop early leaves the thread running (a later
        items() goes on from there): iterating the ReadAhead itself stops it at the end."""
        while True:
            if self._stop.is_set():
                raise ValueError("the audio stream was closed while it was being read")
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def __iter__(self) -> Iterator[Item]:
        try:
            yield from self.items()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the thread and wait for it (safe to call twice, from the consumer or from close())."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()  # unblock a producer waiting on a full queue
            except queue.Empty:
                self._thread.join(0.05)
