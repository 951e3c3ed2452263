"""Decoding in worker processes that can be killed and replaced.

decord can hang while holding the GIL, or abort the process, on a malformed file; a try/except
cannot guard against that. Each worker process decodes one video at a time; a worker that runs
past the time limit is killed, one that dies is replaced, and either way only that video is lost
(it becomes an error record). A task is one chunk of one video, ``(index, chunk)``: a video is one
chunk unless dense sampling splits it. Samples come out in list order, chunk after chunk.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
import heapq
from typing import Any, Iterator

import cv2
import torch

from featx.data.dataset import VideoDataset


def _worker_main(dataset: VideoDataset, conn: Connection, parent_end: Connection) -> None:
    parent_end.close()  # so that the parent's death reads as EOF here, and the worker exits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: a plain, quiet exit
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(dataset.sample(*task))


class _Worker:
    def __init__(self, ctx: Any, dataset: VideoDataset) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(dataset, child, self.conn), daemon=True)
        self.proc.start()
        child.close()
        self.task: tuple[int, int] | None = None
        self.started = 0.0

    def assign(self, task: tuple[int, int]) -> None:
        self.task, self.started = task, time.monotonic()
        try:
            self.conn.send(task)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died just now: the supervisor sees it dead and reports the task

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


class DecodePool:
    """Runs ``dataset.sample(i, chunk)`` for every video and chunk in worker processes; iterate to
    get the samples in order.

    A supervisor thread keeps every worker busy while at most ``max_ahead`` samples wait to be
    consumed, and turns a timed-out or crashed worker into ``{'index', 'key', 'error'}``. Once a
    video's first chunk says how many it has, its other chunks go before any new video; every
    chunk of a video is delivered, even after one of them failed.
    """

    def __init__(self, dataset: VideoDataset, num_workers: int, timeout: float, max_ahead: int | None = None) -> None:
        if num_workers < 1:
            raise ValueError("DecodePool needs at least one worker")
        self.dataset = dataset
        self.num_workers = num_workers
        self.timeout = timeout
        self.max_ahead = max_ahead or 2 * num_workers
        self._ready: dict[tuple[int, int], dict[str, Any]] = {}
        self._num_chunks: dict[int, list[int]] = {}  # videos with chunks still to come: [chunks, delivered]
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
            index, chunk = 0, 0
            while index < len(self.dataset):
                with self._cond:
                    while (index, chunk) not in self._ready and self._failure is None:
                        self._cond.wait(0.5)
                    if self._failure is not None:
                        raise RuntimeError("the decode pool's supervisor failed") from self._failure
                    sample = self._ready.pop((index, chunk))
                    self._consumed += 1
                    self._cond.notify_all()
                yield sample
                index, chunk = (index, chunk + 1) if chunk + 1 < sample["num_chunks"] else (index + 1, 0)
        finally:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            thread.join()

    def _supervise(self) -> None:
        ctx = mp.get_context("fork")
        # OpenCV's thread pool does not survive a fork: a child that touches it waits forever on a
        # lock held by a thread it does not have. Stop the pool here (the workers use one thread anyway).
        cv2.setNumThreads(1)
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
        total, next_index, assigned = len(self.dataset), 0, 0
        later: list[tuple[int, int]] = []  # a heap of the chunks after the first of started videos, in consumer order

        def busy() -> list[_Worker]:
            return [w for w in workers if w.task is not None]

        while not self._stop.is_set() and (later or next_index < total or busy()):
            with self._cond:
                while (not self._stop.is_set() and (later or next_index < total)
                       and assigned - self._consumed >= self.max_ahead and not busy()):
                    self._cond.wait(0.5)
                room = self.max_ahead - (assigned - self._consumed)
            for i, worker in enumerate(workers):
                if worker.task is None and room > 0 and (later or next_index < total):
                    if not worker.proc.is_alive():  # died while idle (OOM killer, ...): no video is lost to it
                        worker.kill()
                        worker = workers[i] = _Worker(ctx, self.dataset)
                    if later:
                        worker.assign(heapq.heappop(later))
                    else:
                        worker.assign((next_index, 0))
                        next_index += 1
                    assigned, room = assigned + 1, room - 1
            if not busy():
                continue
            deadline = min(w.started for w in busy()) + self.timeout
            wait([w.conn for w in busy()] + [w.proc.sentinel for w in busy()],
                 timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            for i, worker in enumerate(workers):
                if worker.task is None:
                    continue
                if worker.conn.poll():  # a result, or EOF from a worker that died
                    try:
                        sample = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.proc.join(1)
                        reason = f"the decoder crashed ({_describe_exit(worker.proc.exitcode)})"
                    else:
                        worker.task = None
                        for task in self._put(sample):
                            heapq.heappush(later, task)
                        continue
                elif not worker.proc.is_alive():
                    reason = f"the decoder crashed ({_describe_exit(worker.proc.exitcode)})"
                elif time.monotonic() - worker.started > self.timeout:
                    reason = f"decoding timed out after {self.timeout:g} s (worker killed and replaced)"
                else:
                    continue
                self._put(self._error(worker.task, reason))
                worker.kill()
                workers[i] = _Worker(ctx, self.dataset)

    def _error(self, task: tuple[int, int], reason: str) -> dict[str, Any]:
        item = self.dataset.items[task[0]]
        return {"index": task[0], "key": item.key, "chunk": task[1], "error": f"{item.path}: {reason}"}

    def _put(self, sample: dict[str, Any]) -> list[tuple[int, int]]:
        """Hand ``sample`` to the consumer; return the video's other chunks when it is a first chunk of several."""
        index, chunk = sample["index"], sample["chunk"]
        if chunk == 0:
            self._num_chunks[index] = [sample.setdefault("num_chunks", 1), 0]
        expected = self._num_chunks[index]  # [chunks, delivered]: later chunks may arrive in any order
        sample["num_chunks"] = expected[0]  # a failed later chunk does not know how many there are
        expected[1] += 1
        if expected[1] == expected[0]:
            del self._num_chunks[index]
        with self._cond:
            self._ready[(index, chunk)] = sample
            self._cond.notify_all()
        return [(index, k) for k in range(1, sample["num_chunks"])] if chunk == 0 else []


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit status {code}"
