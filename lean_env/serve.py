"""`subgoal lean serve`: the verifier over HTTP, speaking kimina-lean-server's API (FastAPI + uvicorn).

Endpoints: `POST /api/check` and the legacy `POST /verify` (kimina's models, `lean_env/wire.py`), `GET /health`,
`GET /metrics` (Prometheus). The one non-obvious rule: every failure stays inside its request. A body over the
limit is a 413 before it is parsed, bad JSON a 422, a wrong key a 401, overload a 429 with `Retry-After`, a hung
or crashed REPL an `error` on that snippet only; no request can take the server or another request down.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security.api_key import APIKeyHeader
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lean_env.problem import LeanProblem
from lean_env.service import CheckService, Overloaded, outcome
from lean_env.verifier import Verifier
from lean_env.wire import CheckRequest, CheckResponse, Snippet, VerifyRequestBody, VerifyResponse

if TYPE_CHECKING:
    from lean_env.settings import LeanSettings

log = logging.getLogger("subgoal.serve")
ROUTES = ("/api/check", "/verify", "/one_pass_verify_batch", "/health", "/metrics")
DEFAULT_MAX_BODY = 16 << 20


class _BodyLimit:
    """ASGI middleware: reads a request body up to `max_bytes` (declared or streamed), else answers 413.
    Starlette has no body limit of its own, and uvicorn's only bounds the headers."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        payload = json.dumps({"detail": f"request body over the server's limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class _PoolCollector:
    """Prometheus view of the REPL pool, read at scrape time."""

    def __init__(self, service: CheckService):
        self.service = service

    def collect(self):
        m = self.service.pool.metrics()
        for name, value, doc in (("workers", m.workers, "REPL processes"), ("busy", m.busy, "REPLs running a job"),
                                 ("queue_depth", m.queue_depth, "jobs waiting for a REPL"),
                                 ("admitted", self.service.admitted, "snippets holding a slot")):
            yield GaugeMetricFamily(f"subgoal_pool_{name}", doc, value=value)
        for name in ("timeouts", "crashes", "out_of_memory", "restarts", "recycles", "header_imports"):
            yield CounterMetricFamily(f"subgoal_pool_{name}", f"REPL {name.replace('_', ' ')}",
                                      value=getattr(m, name))


class _Telemetry:
    """Request log (one JSON line per request: stderr logger, and a file when given) and Prometheus metrics."""

    def __init__(self, app: Any, service: CheckService, request_log: TextIO | None):
        self.app = app
        self.file = request_log
        self.registry = CollectorRegistry()
        self.requests = Counter("subgoal_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram("subgoal_request_seconds", "request latency", ["path"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
        self.snippets = Counter("subgoal_snippets", "snippets checked, by outcome", ["outcome"],
                                registry=self.registry)
        self.inflight = Gauge("subgoal_requests_in_flight", "requests being answered", registry=self.registry)
        self.registry.register(_PoolCollector(service))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.monotonic(), 500
        scope.setdefault("state", {})

        async def capture(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.inflight.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            self.inflight.dec()
            self.record(scope, status, time.monotonic() - t0)

    def record(self, scope: dict, status: int, seconds: float) -> None:
        path = scope["path"].rstrip("/") or "/"
        label = path if path in ROUTES else "other"
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)
        outcomes: dict[str, int] = scope["state"].get("outcomes", {})
        for key, n in outcomes.items():
            self.snippets.labels(key).inc(n)
        client = scope.get("client")
        entry = {"ts": round(time.time(), 3), "client": client[0] if client else None, "method": scope["method"],
                 "path": path, "status": status, "ms": round(seconds * 1000, 1), **({"outcomes": outcomes}
                                                                                   if outcomes else {})}
        line = json.dumps(entry)
        log.info(line)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()


def create_app(service: CheckService, *, api_key: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY,
               request_log: TextIO | None = None) -> Any:
    """The ASGI application: FastAPI routes inside the body limit, inside the request log and metrics."""
    app = FastAPI(title="Subgoal Lean verification service", version="1",
                  description="kimina-lean-server compatible; answers with Subgoal's verdict when asked")
    key_header = APIKeyHeader(name="Authorization", auto_error=False)

    async def require_key(auth: str | None = Depends(key_header)) -> None:
        if api_key is None:
            return
        if not auth:
            raise HTTPException(401, "Missing API key (send `Authorization: Bearer <key>`)")
        if not hmac.compare_digest(auth.removeprefix("Bearer ").strip().encode(), api_key.encode()):
            raise HTTPException(401, "Invalid API key")

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, e: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=429, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"detail": f"invalid request: {where}: {first.get('msg', '?')}",
                             "errors": json.loads(json.dumps(errors, default=str))}, status_code=422)

    def note(request: Request, results: list) -> None:
        counts: dict[str, int] = {}
        for r in results:
            counts[outcome(r)] = counts.get(outcome(r), 0) + 1
        request.state.outcomes = counts

    @app.post("/api/check", response_model=CheckResponse, response_model_exclude_none=True,
              dependencies=[Depends(require_key)])
    @app.post("/api/check/", response_model=CheckResponse, response_model_exclude_none=True,
              dependencies=[Depends(require_key)], include_in_schema=False)
    async def check(body: CheckRequest, request: Request) -> CheckResponse:
        results = await service.check(body.snippets, body.timeout, body.infotree, body.debug)
        note(request, results)
        return CheckResponse(results=results)

    @app.post("/verify", response_model=VerifyResponse, dependencies=[Depends(require_key)])
    @app.post("/one_pass_verify_batch", response_model=VerifyResponse, dependencies=[Depends(require_key)])
    async def verify(body: VerifyRequestBody, request: Request) -> VerifyResponse:
        try:
            snippets = [Snippet(id=str(c.custom_id), code=c.content()) for c in body.codes]
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        results = await service.check(snippets, body.timeout, body.infotree_type)
        note(request, results)
        out = []
        for r in results:
            item: dict[str, Any] = {"custom_id": r.id}
            if r.error is not None:
                item["error"] = r.error
            else:
                item["response"] = {**(r.response or {}), "time": r.time}
            if r.verdict is not None:
                item["verdict"] = r.verdict
            out.append(item)
        return VerifyResponse(results=out)

    @app.get("/health")
    @app.get("/health/", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return service.health()

    telemetry = _Telemetry(_BodyLimit(app, max_body_bytes), service, request_log)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(telemetry.registry), media_type="text/plain; version=0.0.4")

    return telemetry


def open_request_log(path: Path | None) -> TextIO | None:
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")


def run(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until Ctrl-C (uvicorn's own access log is off: the request log above replaces it)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


class ServerThread:
    """The app served by uvicorn on a background thread (tests, benchmarks, an in-process reward server).
    `port=0` picks a free port; `url` is known once the context is entered."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="subgoal-serve", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_forever(settings: LeanSettings | None, problems: dict[str, LeanProblem] | None = None, *, host: str = "127.0.0.1",
                  port: int = 8000, max_wait_s: float = 60.0, queue_per_worker: int = 4, api_key: str | None = None,
                  max_body_bytes: int = DEFAULT_MAX_BODY, request_log: Path | None = None,
                  log_level: str = "info", warm_headers: list[str] | None = None, warm_problems: bool = True) -> None:
    """`subgoal lean serve`: a warm REPL pool for the settings' toolchain, served until Ctrl-C, then closed."""
    from lean_env import make_pool
    from lean_env.toolchain import locate

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(message)s")
    tc = locate(settings)
    workers = getattr(settings, "workers", None) or 1
    capacity = workers * (1 + queue_per_worker)
    pool = make_pool(settings, queue_size=capacity)  # the queue holds every admitted snippet: submit never blocks
    verifier = Verifier(pool, lean_version=tc.lean_version, mathlib_version=tc.mathlib_version)
    service = CheckService(verifier, problems, max_wait_s=max_wait_s,
                           max_timeout_s=getattr(settings, "timeout_s", None) or 300.0, capacity=capacity)
    log_file = open_request_log(request_log)
    try:
        headers = list(warm_headers or []) + ([getattr(p, "header", "") for p in service.problems.values()]
                                              if warm_problems else [])
        if headers:
            log.info(f"importing {len(set(headers))} header(s) on {pool.workers} REPLs ...")
            for line in service.warm(headers):
                log.warning(f"warm-up failed: {line}")
        log.info(f"serving {len(service.problems)} problems with {pool.workers} REPLs on http://{host}:{port}"
                 f" (kimina-compatible /api/check and /verify; /health, /metrics)")
        run(create_app(service, api_key=api_key, max_body_bytes=max_body_bytes, request_log=log_file), host, port,
            log_level)
    finally:
        verifier.close()
        if log_file is not None:
            log_file.close()
