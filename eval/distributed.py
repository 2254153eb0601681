"""Attempts on a Ray cluster: the same runner as in one process (`prover.runner`), its executor spread over actors.

The work is described by a picklable recipe (`prover.recipe.ProveRecipe`): how to build a *generator* (a
generation backend: one per GPU, or per tensor-parallel group), how to build a *checker* (a Lean verifier
holding a REPL pool: one per node), and how to run one attempt with both (`arun`).

- `GenerationWorker` actors (`num_gpus` = tensor-parallel size) are asyncio actors: each runs the same loop as
  one process, every attempt it was sent a concurrent task over its own `Engine`, so its GPU stays full.
- `CheckerActor`s (one per node, threaded) verify for the workers on their node (REPL traffic stays local).
- `RayExecutor.run(unit)` is what `prover.runner.drive` awaits: it sends the unit to the least-loaded worker
  and awaits its result, which streams back on its own. A unit whose worker or checker died is sent again to a
  replacement (at most `max_retries` times); `drive`, the only writer of the store, records it once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from eval.errors import EvalError
from eval.ray_local import LocalRayCluster
from prover.runner import Engine, Recipe, WorkUnit, close_all

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

# Attempts in flight per generation worker when the user sets no bound: enough that an engine with hundreds of
# sequences in flight (vLLM, a server) stays full while some of them wait for Lean.
PER_WORKER_IN_FLIGHT = 256


# ---------------------------------------------------------------- Ray actors (defined lazily: ray is heavy)


class CheckerLost(Exception):
    """Raised inside a worker when its node's checker actor died mid-call; the driver replaces it."""

    def __init__(self, node_id: str):
        super().__init__(f"checker actor on node {node_id} died")
        self.node_id = node_id

    def __reduce__(self):
        return (CheckerLost, (self.node_id,))


class _RemoteChecker:
    """Looks like an async checker to the recipe: every method call goes to the node's checker actor."""

    def __init__(self, handle: Any, node_id: str):
        self._handle, self._node_id = handle, node_id

    def __getattr__(self, name: str) -> Callable[..., Any]:
        import ray

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await self._handle.call.remote(name, *args, **kwargs)
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
    """An asyncio actor: every `run` call is one attempt task on this actor's event loop, all sharing one
    `Engine` (the GPU is fed by all of them at once)."""

    def __init__(self, recipe: Recipe):
        import ray

        self.recipe = recipe
        self.node_id = ray.get_runtime_context().get_node_id()
        self.engine, self.error = None, None
        try:
            self.engine = Engine(recipe.make_generator())
        except Exception as e:  # kept for `ready` (e.g. an unknown model id)
            self.error = e

    async def ready(self) -> None:
        if self.error is not None:
            raise self.error

    async def run(self, unit: WorkUnit, checkers: dict[str, Any]) -> Any:
        # The checker on this node if there is one (REPL traffic stays local), else any.
        node_id = self.node_id if self.node_id in checkers else next(iter(checkers))
        return await self.recipe.arun(self.engine, _RemoteChecker(checkers[node_id], node_id), unit.problem,
                                      unit.index)

    async def close(self) -> None:
        close_all(self.engine, self.recipe)  # the recipe: what it opened in this process (proof sessions)


class RayExecutor:
    """Attempts over Ray actors; replaces dead actors and resends their attempts (at most `max_retries`)."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: int = 1,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        checker_concurrency: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ):
        import ray

        self.ray = ray
        self._cluster: LocalRayCluster | None = None  # the local cluster this executor started, if it did
        if not ray.is_initialized():
            init_args = {"include_dashboard": False, "log_to_driver": False, "runtime_env": runtime_env,
                         "ignore_reinit_error": True}
            if address is None:  # a local cluster: its processes die with this driver, however it dies
                self._cluster = LocalRayCluster(ray, **init_args)
            else:
                ray.init(address=address, **init_args)
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_worker = gpus_per_worker if cluster_gpus else 0
        if workers is None:
            workers = max(1, cluster_gpus // max(1, gpus_per_worker)) if cluster_gpus else 1
        if cluster_gpus and workers * gpus_per_worker > cluster_gpus:
            raise EvalError(f"{workers} workers x {gpus_per_worker} GPUs exceed the cluster's {cluster_gpus} GPUs")
        self.recipe = recipe
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight or PER_WORKER_IN_FLIGHT * workers
        # Threaded: the attempts of every worker on a node verify through its one REPL pool at once; enough
        # threads to keep that pool full (`AsyncChecker`'s sizing).
        lean_workers = int(getattr(getattr(recipe, "lean_settings", None), "workers", None) or 4)
        concurrency = checker_concurrency or 2 * lean_workers
        self._checker_cls = ray.remote(num_cpus=1, max_concurrency=concurrency)(_CheckerActorImpl)
        self._worker_cls = ray.remote(_GenerationWorkerImpl)  # async methods: an asyncio actor
        self.checkers: dict[str, Any] = {nid: self._new_checker(nid) for nid in self._cpu_nodes()}
        self.workers: list[Any] = [self._new_worker() for _ in range(workers)]
        self.load: dict[Any, int] = {}  # attempts in flight per worker actor
        self.replaced = 0  # actors replaced after dying (workers + checkers)
        self.retried = 0  # attempts resent because their actor died
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
        return self._worker_cls.options(num_gpus=self.gpus_per_worker, num_cpus=0,
                                        max_concurrency=self.max_in_flight).remote(self.recipe)

    def _replace_worker(self, worker: Any) -> None:
        if worker in self.workers:  # several in-flight attempts fail for one death: replace once
            self.ray.kill(worker, no_restart=True)
            self.workers[self.workers.index(worker)] = self._new_worker()
            self.replaced += 1
            log.warning("generation worker died; replaced it")

    def _replace_checker(self, node_id: str, dead: Any) -> None:
        if self.checkers.get(node_id) is dead:  # only the first failure of a dead checker replaces it
            self.checkers[node_id] = self._new_checker(node_id)
            self.replaced += 1
            log.warning("checker actor on node %s died; replaced it", node_id)

    def capacity(self) -> int:
        return self.max_in_flight

    async def run(self, unit: WorkUnit) -> Any:
        ray = self.ray
        for tries in itertools.count():
            worker = min(self.workers, key=lambda w: self.load.get(w, 0))  # least-loaded worker
            checkers = dict(self.checkers)
            self.load[worker] = self.load.get(worker, 0) + 1
            ref = worker.run.remote(unit, checkers)
            try:
                return await ref
            except asyncio.CancelledError:  # stop-at-first or Ctrl-C: the actor stops this attempt too
                ray.cancel(ref)
                raise
            except ray.exceptions.RayActorError:
                self._retry(unit, tries, "worker died")
                self._replace_worker(worker)
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                if not isinstance(cause, CheckerLost):
                    raise (cause or e) from None  # the recipe's own error (a user error stays one line)
                self._retry(unit, tries, str(cause))
                self._replace_checker(cause.node_id, checkers.get(cause.node_id))
            finally:
                self.load[worker] = self.load.get(worker, 1) - 1
        raise AssertionError("unreachable")

    def _retry(self, unit: WorkUnit, tries: int, why: str) -> None:
        if tries >= self.max_retries:
            raise EvalError(f"attempt {unit.index} of {unit.problem.name} failed {tries + 1} times ({why})")
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
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
