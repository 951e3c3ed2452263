"""Work in worker processes that can be killed and replaced, results in task order.

A native library can hang while holding the GIL, or abort the process, on a malformed input; a
try/except cannot guard against that. Each worker process runs one task at a time; a worker that
runs past the time limit is killed, one that dies is replaced, and either way only that task is
lost (its outcome is what ``failed`` makes of the reason). This module knows nothing of videos.
"""
from __future__ import annotations

import heapq
import multiprocessing as mp
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Generic, Hashable, Iterator, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)
R = TypeVar("R")


def _worker_main(work: Callable[[Any], Any], init: Callable[[], None] | None, conn: Connection,
                 parent_end: Connection) -> None:
    parent_end.close()  # so that the parent's death reads as EOF here, and the worker exits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: a plain, quiet exit
    if init is not None:
        init()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(work(task))


class _Worker:
    def __init__(self, work: Callable[[Any], Any], init: Callable[[], None] | None) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(work, init, child, self.conn), daemon=True)
        self.proc.start()
        child.close()
        self.task: Any = None
        self.started = 0.0

    def assign(self, task: Any) -> None:
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


class KillablePool(Generic[T, R]):
    """Runs ``work(task)`` for every task in ``num_workers`` forked processes; iterate to get the
    outcomes in task order.

    ``follow_ups(task, outcome)`` may add tasks when a task is done: they are delivered right after
    it (before the next of ``tasks``) and run before any new task starts. A task whose worker takes
    longer than ``timeout`` seconds, or dies, gets ``failed(task, reason)`` as its outcome (``reason``:
    "crashed (killed by signal SIGKILL)", "timed out after 300 s (killed and replaced)"). A
    supervisor thread keeps every worker busy while at most ``max_ahead`` outcomes wait to be
    consumed. ``worker_init`` runs first in every worker, ``before_fork`` before the pool forks any.

    Every worker is forked by the thread that iterates the pool (the supervisor asks it for a
    replacement): a fork keeps only the forking thread, and the child frees what the others held in
    thread-local storage. PyAV keeps a frame converter there, with threads of its own: freed in a
    child, it waits forever for them. So a worker forked from another thread than the one that
    decoded with PyAV (a notebook, a test) would hang at its start.
    """

    def __init__(self, work: Callable[[T], R], tasks: Sequence[T], num_workers: int, timeout: float, *,
                 failed: Callable[[T, str], R], follow_ups: Callable[[T, R], Sequence[T]] = lambda t, r: (),
                 worker_init: Callable[[], None] | None = None, before_fork: Callable[[], None] | None = None,
                 max_ahead: int | None = None) -> None:
        if num_workers < 1:
            raise ValueError("KillablePool needs at least one worker")
        self.work, self.tasks, self.num_workers, self.timeout = work, list(tasks), num_workers, timeout
        self.failed, self.follow_ups = failed, follow_ups
        self.worker_init, self.before_fork = worker_init, before_fork
        self.max_ahead = max_ahead or 2 * num_workers
        self._ready: dict[T, R] = {}
        self._after: dict[T, list[T]] = {}  # a finished task's follow-ups, in delivery order
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._consumed = 0
        self._workers: list[_Worker | None] = []  # None: waiting for its replacement, which the consumer forks
        self._wanted: list[int] = []  # those slots

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[R]:
        if self.before_fork is not None:
            self.before_fork()
        self._workers = [_Worker(self.work, self.worker_init) for _ in range(min(self.num_workers, len(self.tasks)))]
        thread = threading.Thread(target=self._supervise, name="featx-pool", daemon=True)
        thread.start()
        try:
            for task in self.tasks:
                yield from self._deliver(task)
        finally:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            thread.join()
            for worker in self._workers:
                if worker is not None:
                    worker.kill()

    def _deliver(self, task: T) -> Iterator[R]:
        with self._cond:
            while task not in self._ready and self._failure is None:
                if self._wanted:  # replacements, forked here (see the class's docstring)
                    for slot in self._wanted:
                        self._workers[slot] = _Worker(self.work, self.worker_init)
                    self._wanted.clear()
                    self._cond.notify_all()
                    continue
                self._cond.wait(0.5)
            if self._failure is not None:
                raise RuntimeError("the worker pool's supervisor failed") from self._failure
            outcome = self._ready.pop(task)
            later = self._after.pop(task, [])
            self._consumed += 1
            self._cond.notify_all()
        yield outcome
        for follow_up in later:
            yield from self._deliver(follow_up)

    def _supervise(self) -> None:
        try:
            self._run(self._workers)
        except BaseException as exc:  # hand any supervisor failure to the consuming thread
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def _replace(self, slot: int) -> None:
        """Kill the worker in ``slot`` and ask the consuming thread for a new one."""
        self._workers[slot].kill()
        with self._cond:
            self._workers[slot] = None
            self._wanted.append(slot)
            self._cond.notify_all()

    def _run(self, workers: list[_Worker | None]) -> None:
        next_task, assigned = 0, 0
        # Follow-ups waiting for a worker, by delivery order: (position of their first-level task, rank).
        later: list[tuple[tuple[int, int], Any]] = []
        position: dict[Any, int] = {}

        def busy() -> list[_Worker]:
            return [w for w in workers if w is not None and w.task is not None]

        def idle() -> bool:
            return any(w is not None and w.task is None for w in workers)

        def pending() -> bool:
            return bool(later) or next_task < len(self.tasks)

        while not self._stop.is_set() and (pending() or busy()):
            with self._cond:
                while not self._stop.is_set() and pending() and not busy() \
                        and (assigned - self._consumed >= self.max_ahead or not idle()):
                    self._cond.wait(0.5)
                room = self.max_ahead - (assigned - self._consumed)
            for i, worker in enumerate(workers):
                if worker is not None and worker.task is None and room > 0 and pending():
                    if not worker.proc.is_alive():  # died while idle (OOM killer, ...): no task is lost to it
                        self._replace(i)
                        continue
                    if later:  # a started video's other chunks, say, go first
                        worker.assign(heapq.heappop(later)[1])
                    else:
                        task = self.tasks[next_task]
                        position[task] = next_task
                        worker.assign(task)
                        next_task += 1
                    assigned, room = assigned + 1, room - 1
            if not busy():
                continue
            deadline = min(w.started for w in busy()) + self.timeout
            wait([w.conn for w in busy()] + [w.proc.sentinel for w in busy()],
                 timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            for i, worker in enumerate(workers):
                if worker is None or worker.task is None:
                    continue
                task = worker.task
                if worker.conn.poll():  # an outcome, or EOF from a worker that died
                    try:
                        outcome = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.proc.join(1)
                        reason = f"crashed ({_describe_exit(worker.proc.exitcode)})"
                    else:
                        worker.task = None
                        at = position.pop(task)
                        follow_ups = list(self.follow_ups(task, outcome))
                        for rank, follow_up in enumerate(follow_ups):
                            position[follow_up] = at
                            heapq.heappush(later, ((at, rank), follow_up))
                        self._put(task, outcome, follow_ups)
                        continue
                elif not worker.proc.is_alive():
                    reason = f"crashed ({_describe_exit(worker.proc.exitcode)})"
                elif time.monotonic() - worker.started > self.timeout:
                    reason = f"timed out after {self.timeout:g} s (killed and replaced)"
                else:
                    continue
                position.pop(task)
                self._put(task, self.failed(task, reason), [])
                self._replace(i)

    def _put(self, task: T, outcome: R, follow_ups: list[T]) -> None:
        with self._cond:
            self._ready[task] = outcome
            if follow_ups:
                self._after[task] = follow_ups
            self._cond.notify_all()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit status {code}"
