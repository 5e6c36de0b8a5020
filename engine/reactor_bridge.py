"""Store calls from the Twisted reactor: writes via the writer thread, reads on the thread pool."""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable

from twisted.internet import defer, reactor, threads

from .store.database import Store, Transaction


def to_deferred(future: "Future[Any]") -> defer.Deferred:
    """A Deferred that fires on the reactor thread when ``future`` (resolved on another thread) does."""
    result: defer.Deferred = defer.Deferred()

    def resolve(done: "Future[Any]") -> None:
        error = done.exception()
        if error is not None:
            reactor.callFromThread(result.errback, error)
        else:
            reactor.callFromThread(result.callback, done.result())

    future.add_done_callback(resolve)
    return result


def write(store: Store, work: Callable[[Transaction], Any]) -> defer.Deferred:
    return to_deferred(store.submit(work))


def read(store: Store, work: Callable[[Transaction], Any]) -> defer.Deferred:
    return threads.deferToThread(store.read, work)
