"""Decoding in worker processes that can be killed and replaced.

decord can hang while holding the GIL, or abort the process, on a malformed file; a try/except
cannot guard against that. Each worker process decodes one video at a time; a worker that runs
past the time limit is killed, one that dies is replaced, and either way only that video is lost
(it becomes an error record). Samples come out in list order.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator

import cv2
import torch

from featx.data.dataset import VideoDataset


def _worker_main(dataset: VideoDataset, conn: Connection, parent_end: Connection) -> None:
    parent_end.close()  # so that the parent's death reads as EOF here, and the worker exits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    while True:
        try:
            index = conn.recv()
        except EOFError:
            return
        if index is None:
            return
        conn.send(dataset[index])


class _Worker:
    def __init__(self, ctx: Any, dataset: VideoDataset) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(dataset, child, self.conn), daemon=True)
        self.proc.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def assign(self, index: int) -> None:
        self.index, self.started = index, time.monotonic()
        self.conn.send(index)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


class DecodePool:
    """Runs ``dataset[i]`` for every i in worker processes; iterate to get samples in index order.

    A supervisor thread keeps every worker busy while at most ``max_ahead`` samples wait to be
    consumed, and turns a timed-out or crashed worker into ``{'index', 'key', 'error'}``.
    """

    def __init__(self, dataset: VideoDataset, num_workers: int, timeout: float, max_ahead: int | None = None) -> None:
        if num_workers < 1:
            raise ValueError("DecodePool needs at least one worker")
        self.dataset = dataset
        self.num_workers = num_workers
        self.timeout = timeout
        self.max_ahead = max_ahead or 2 * num_workers
        self._ready: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._consumed = 0
        thread = threading.Thread(target=self._supervise, name="featx-decode-pool", daemon=True)
        thread.start()
        try:
            for index in range(len(self.dataset)):
                with self._cond:
                    while index not in self._ready and self._failure is None:
                        self._cond.wait(0.5)
                    if self._failure is not None:
                        raise RuntimeError("the decode pool's supervisor failed") from self._failure
                    sample = self._ready.pop(index)
                    self._consumed = index + 1
                    self._cond.notify_all()
                yield sample
        finally:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            thread.join()

    def _supervise(self) -> None:
        ctx = mp.get_context("fork")
        workers = [_Worker(ctx, self.dataset) for _ in range(min(self.num_workers, len(self.dataset)))]
        try:
            self._run(ctx, workers)
        except BaseException as exc:  # hand any supervisor failure to the consuming thread
            with self._cond:
                self._failure = exc
                self._cond.notify_all()
        finally:
            for worker in workers:
                worker.kill()

    def _run(self, ctx: Any, workers: list[_Worker]) -> None:
        total, next_index = len(self.dataset), 0
        while not self._stop.is_set() and (next_index < total or any(w.index is not None for w in workers)):
            with self._cond:
                while (not self._stop.is_set() and next_index < total
                       and next_index - self._consumed >= self.max_ahead
                       and not any(w.index is not None for w in workers)):
                    self._cond.wait(0.5)
                room = self.max_ahead - (next_index - self._consumed)
            for worker in workers:
                if worker.index is None and next_index < total and room > 0:
                    worker.assign(next_index)
                    next_index, room = next_index + 1, room - 1
            busy = [w for w in workers if w.index is not None]
            if not busy:
                continue
            deadline = min(w.started for w in busy) + self.timeout
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy],
                 timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            for i, worker in enumerate(workers):
                if worker.index is None:
                    continue
                if worker.conn.poll():  # a result, or EOF from a worker that died
                    try:
                        self._put(worker.conn.recv())
                        worker.index = None
                        continue
                    except (EOFError, OSError):
                        worker.proc.join(1)
                        reason = f"the decoder crashed ({_describe_exit(worker.proc.exitcode)})"
                elif not worker.proc.is_alive():
                    reason = f"the decoder crashed ({_describe_exit(worker.proc.exitcode)})"
                elif time.monotonic() - worker.started > self.timeout:
                    reason = f"decoding timed out after {self.timeout:g} s (worker killed and replaced)"
                else:
                    continue
                self._put(self._error(worker.index, reason))
                worker.kill()
                workers[i] = _Worker(ctx, self.dataset)

    def _error(self, index: int, reason: str) -> dict[str, Any]:
        item = self.dataset.items[index]
        return {"index": index, "key": item.key, "error": f"{item.path}: {reason}"}

    def _put(self, sample: dict[str, Any]) -> None:
        with self._cond:
            self._ready[sample["index"]] = sample
            self._cond.notify_all()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit status {code}"
