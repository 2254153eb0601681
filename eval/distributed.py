"""Run (problem, attempt index) work units in one process or on a Ray cluster; the driver writes the store.

The work is described by a picklable `Recipe` (`prover.batch.ProveRecipe`): how to build a *generator* (a
generation backend: one per GPU, or per tensor-parallel group), how to build a *checker* (a Lean verifier
holding a REPL pool: one per node), and how to run units with both. Units travel in *jobs*: consecutive units
of one problem (`prover.batch.jobs`), which the recipe runs in one go where it can (whole-proof sampling: one
generation call for all of a problem's pending attempts, what keeps a vLLM engine busy); results still come
back, and are recorded, one unit at a time. Executors only move jobs and results:

- `LocalExecutor` (`prover.batch`, shared with `subgoal prove`): one generator and one checker in this process.
- `RayExecutor` (here): GPU actors (`GenerationWorker`, `num_gpus` = tensor-parallel size) run jobs; CPU actors
  (`CheckerActor`, one per node, threaded) verify for the workers on their node. At most `max_in_flight`
  jobs are submitted at a time (backpressure). A job whose actor died is resubmitted, whole, to a replacement.

`drive` (`prover.batch`) is the only code that writes the run store, in both modes: it skips units already
done, records each result once (the store is idempotent on (run, problem, index), and the driver dedups too).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from eval.errors import EvalError
from prover.batch import (  # the units, jobs and driver are prover's; this module adds Ray
    BoundRecipe,
    DriveStats,
    Executor,
    LocalExecutor,
    Recipe,
    WorkUnit,
    close_all,
    drive,
    jobs,
    run_job,
)

__all__ = ["DriveStats", "Executor", "LocalExecutor", "RayExecutor", "Recipe", "WorkUnit", "drive"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- Ray actors (defined lazily: ray is heavy)


class CheckerLost(Exception):
    """Raised inside a worker when its node's checker actor died mid-call; the driver replaces it."""

    def __init__(self, node_id: str):
        super().__init__(f"checker actor on node {node_id} died")
        self.node_id = node_id

    def __reduce__(self):
        return (CheckerLost, (self.node_id,))


class _RemoteChecker:
    """Looks like the checker to the recipe; forwards every method call to the node's checker actor."""

    def __init__(self, handle: Any, node_id: str):
        self._handle, self._node_id = handle, node_id

    def __getattr__(self, name: str) -> Callable[..., Any]:
        import ray

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return ray.get(self._handle.call.remote(name, *args, **kwargs))
            except ray.exceptions.RayActorError as e:
                raise CheckerLost(self._node_id) from e

        return call


class _CheckerActorImpl:
    def __init__(self, recipe: Recipe):
        self.checker, self.error = None, None
        try:
            self.checker = recipe.make_checker()
        except Exception as e:  # kept for `ready`, so the driver sees the real error (e.g. Lean not found)
            self.error = e

    def ready(self) -> None:
        if self.error is not None:
            raise self.error

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.checker, method)(*args, **kwargs)

    def close(self) -> None:
        close_all(self.checker)


class _GenerationWorkerImpl:
    def __init__(self, recipe: Recipe):
        import ray

        self.recipe = recipe
        self.node_id = ray.get_runtime_context().get_node_id()
        self.generator, self.error = None, None
        try:
            self.generator = recipe.make_generator()
        except Exception as e:  # kept for `ready` (e.g. an unknown model id)
            self.error = e

    def ready(self) -> None:
        if self.error is not None:
            raise self.error

    def run(self, job: list[WorkUnit], checkers: dict[str, Any]) -> list[tuple[WorkUnit, Any]]:
        # The checker on this node if there is one (REPL traffic stays local), else any.
        node_id = self.node_id if self.node_id in checkers else next(iter(checkers))
        checker = _RemoteChecker(checkers[node_id], node_id)
        return run_job(BoundRecipe(self.recipe, self.generator, checker), job)

    def close(self) -> None:
        close_all(self.generator, self.recipe)  # the recipe: what it opened in this process (a proof session)


@dataclass
class _InFlight:
    job: list[WorkUnit]
    worker: Any
    tries: int
    checkers: dict[str, Any]  # the checker handles this job was sent with


class RayExecutor:
    """Jobs over Ray actors; replaces dead actors and resubmits their jobs (at most `max_retries`)."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: int = 1,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        worker_concurrency: int = 1,
        checker_concurrency: int = 8,
        runtime_env: dict[str, Any] | None = None,
        group: int = 1,
    ):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env, ignore_reinit_error=True)
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_worker = gpus_per_worker if cluster_gpus else 0
        if workers is None:
            workers = max(1, cluster_gpus // max(1, gpus_per_worker)) if cluster_gpus else 1
        if cluster_gpus and workers * gpus_per_worker > cluster_gpus:
            raise EvalError(f"{workers} workers x {gpus_per_worker} GPUs exceed the cluster's {cluster_gpus} GPUs")
        self.recipe = recipe
        self.group = group  # units of one problem per job
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight or 2 * workers * worker_concurrency
        # Threaded: many generation workers verify through one REPL pool per node at the same time.
        self._checker_cls = ray.remote(num_cpus=1, max_concurrency=checker_concurrency)(_CheckerActorImpl)
        # worker_concurrency > 1 runs several attempts at once in one actor (threads): only for thread-safe
        # backends, e.g. the OpenAI client of a `vllm serve`, which batches the concurrent requests itself.
        self._worker_cls = ray.remote(max_concurrency=worker_concurrency)(_GenerationWorkerImpl)
        self.checkers: dict[str, Any] = {nid: self._new_checker(nid) for nid in self._cpu_nodes()}
        self.workers: list[Any] = [self._new_worker() for _ in range(workers)]
        self.replaced = 0  # actors replaced after dying (workers + checkers)
        self.retried = 0  # jobs resubmitted because their actor died
        self._wait_ready([*self.checkers.values(), *self.workers])

    def _wait_ready(self, actors: list[Any]) -> None:
        """Block until the actors have built their backend / REPL pool; raise their construction error."""
        try:
            self.ray.get([a.ready.remote() for a in actors])
        except self.ray.exceptions.RayTaskError as e:
            self.close()
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, BaseException) else e) from None

    def _cpu_nodes(self) -> list[str]:
        nodes = [n["NodeID"] for n in self.ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
        if not nodes:
            raise EvalError("the Ray cluster has no node with a free CPU for the Lean verifier")
        return nodes

    def _new_checker(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node_id, soft=True)  # soft: a dead node's checker moves
        return self._checker_cls.options(scheduling_strategy=strategy).remote(self.recipe)

    def _new_worker(self) -> Any:
        # num_cpus=0: a worker's resource is its GPU(s); on CPU-only clusters it must not starve the checkers.
        return self._worker_cls.options(num_gpus=self.gpus_per_worker, num_cpus=0).remote(self.recipe)

    def _replace_worker(self, worker: Any) -> None:
        if worker in self.workers:  # several in-flight units fail for one death: replace once
            self.ray.kill(worker, no_restart=True)
            self.workers[self.workers.index(worker)] = self._new_worker()
            self.replaced += 1
            log.warning("generation worker died; replaced it")

    def _replace_checker(self, node_id: str, dead: Any) -> None:
        if self.checkers.get(node_id) is dead:  # only the first failure of a dead checker replaces it
            self.checkers[node_id] = self._new_checker(node_id)
            self.replaced += 1
            log.warning("checker actor on node %s died; replaced it", node_id)

    def stream(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]:
        ray = self.ray
        pending: deque[tuple[list[WorkUnit], int]] = deque()
        source = jobs(units, self.group)
        in_flight: dict[Any, _InFlight] = {}
        load = dict.fromkeys(range(len(self.workers)), 0)

        def submit(job: list[WorkUnit], tries: int) -> None:
            slot = min(load, key=load.get)  # least-loaded worker
            worker = self.workers[slot]
            checkers = dict(self.checkers)
            in_flight[worker.run.remote(job, checkers)] = _InFlight(job, worker, tries, checkers)
            load[slot] += 1

        while True:
            while len(in_flight) < self.max_in_flight:
                if pending:
                    submit(*pending.popleft())
                elif (job := next(source, None)) is not None:
                    submit(job, 0)
                else:
                    break
            if not in_flight:
                return
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(ref)
            if job.worker in self.workers:
                load[self.workers.index(job.worker)] -= 1
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._retry(job, pending, "worker died")
                slot = self._slot_of(job.worker)
                self._replace_worker(job.worker)
                if slot is not None:
                    load[slot] = 0  # the replacement starts empty; the dead one's refs fail and are requeued
                continue
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                if isinstance(cause, CheckerLost):
                    self._retry(job, pending, str(cause))
                    self._replace_checker(cause.node_id, job.checkers.get(cause.node_id))
                    continue
                raise (cause or e) from None  # the recipe's own error (a user error stays one line)
            yield from results

    def _slot_of(self, worker: Any) -> int | None:
        return self.workers.index(worker) if worker in self.workers else None

    def _retry(self, job: _InFlight, pending: deque[tuple[list[WorkUnit], int]], why: str) -> None:
        if job.tries >= self.max_retries:
            first = job.job[0]
            what = ", ".join(str(u.index) for u in job.job)
            raise EvalError(f"attempts {what} of {first.problem.name} failed {job.tries + 1} times ({why})")
        pending.append((job.job, job.tries + 1))
        self.retried += 1

    def close(self) -> None:
        ray = self.ray
        for actor in itertools.chain(self.workers, self.checkers.values()):
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # a dead actor has nothing left to close
                pass
            ray.kill(actor, no_restart=True)
        self.workers, self.checkers = [], {}
