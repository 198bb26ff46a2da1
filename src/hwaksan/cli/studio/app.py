"""The studio's HTTP API (Starlette): JSON in and out, server-sent events for a run's steps.

Every refusal is a 4xx response ``{"error": "one line"}``; unknown routes are 404 in the same
form. The page and its assets are the files of the static folder, by name only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .commands import PreparedRun, parse_body
from .errors import RequestError, one_line
from .runs import FINAL, Run
from .service import Studio

__all__ = ["create_app", "STATIC", "WAIT_SECONDS"]

STATIC = Path(__file__).resolve().parent / "static"
"""The page's files (index.html and its assets)."""
WAIT_SECONDS = 1.0
"""The longest an event stream waits without looking at its run's events (it is woken on each)."""
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status)


def _static_file(static: Path, name: str) -> Response:
    """A file of the static folder by its name; 404 for any other name."""
    if (
        _FILE_NAME.match(name)
        and static.is_dir()
        and name in {p.name for p in static.iterdir() if p.is_file()}
    ):
        return FileResponse(static / name)
    return _error(404, f"no file {name[:60]!r} in the studio's static folder")


def create_app(
    studio: Studio, static: Path = STATIC, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """The ASGI app of ``studio``, serving the page from ``static``.

    ``allowed_hosts``: the names a request's ``Host`` header may carry (None: any). A studio on
    the loopback address answers only to loopback names, so a page of another site whose name was
    made to resolve to 127.0.0.1 (DNS rebinding) is refused.
    """

    def run_or_404(request: Request) -> Run:
        run = studio.runs.get(request.path_params["run"])
        if run is None:
            raise HTTPException(404, f"no run {request.path_params['run'][:40]!r} (unknown or too old)")
        return run

    async def index(request: Request) -> Response:
        return _static_file(static, "index.html")

    async def static_file(request: Request) -> Response:
        return _static_file(static, request.path_params["name"])

    async def models(request: Request) -> Response:
        return JSONResponse(studio.catalogue())

    async def create_run(request: Request) -> Response:
        # Only a JSON body: a page of another site can send a form or plain text to this port
        # without asking, but a JSON request needs the CORS approval this server never gives.
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise RequestError(415, "send the run as JSON (Content-Type: application/json)")
        limits = studio.limits
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"the request is over {limits.max_body_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limits.max_body_bytes:
                raise RequestError(413, f"the request is over {limits.max_body_bytes} bytes")
        run, job, position = await run_in_threadpool(_parse_and_submit, studio, bytes(raw))
        return JSONResponse(
            {"run": run.id, "nfe": job.nfe, "command": job.command, "position": position}, status_code=202
        )

    async def events(request: Request) -> Response:
        run = run_or_404(request)
        return StreamingResponse(
            _event_stream(run),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def cancel(request: Request) -> Response:
        return JSONResponse({"cancelled": studio.cancel(run_or_404(request))})

    async def result_png(request: Request) -> Response:
        run = run_or_404(request)
        if run.result_png is None:
            raise HTTPException(404, f"run {run.id} has no result (yet)")
        return Response(run.result_png, media_type="image/png", headers=_attachment(f"hwaksan-{run.id}.png"))

    async def points_csv(request: Request) -> Response:
        run = run_or_404(request)
        if run.points_csv is None:
            raise HTTPException(404, f"run {run.id} has no points (yet, or not a 2-D model)")
        return Response(run.points_csv, media_type="text/csv", headers=_attachment(f"hwaksan-{run.id}.csv"))

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/api/runs", create_run, methods=["POST"]),
        Route("/api/runs/{run}/events", events, methods=["GET"]),
        Route("/api/runs/{run}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run}/result.png", result_png, methods=["GET"]),
        Route("/api/runs/{run}/points.csv", points_csv, methods=["GET"]),
    ]

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, RequestError):
            return _error(exc.status, exc.message)
        if isinstance(exc, HTTPException):
            detail = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else None
            return _error(exc.status_code, detail or f"no route {request.method} {request.url.path[:80]}")
        return _error(500, f"internal error: {type(exc).__name__}")

    middleware = (
        [] if allowed_hosts is None else [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={RequestError: refused, HTTPException: refused, Exception: refused},
    )


def _parse_and_submit(studio: Studio, raw: bytes) -> tuple[Run, PreparedRun, int]:
    """:func:`parse_body`, then :meth:`Studio.submit` (in a worker thread of the server: the
    uploads are decoded and written there)."""
    return studio.submit(parse_body(raw, studio.limits))


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


async def _event_stream(run: Run) -> AsyncIterator[str]:
    """The run's events from the first, as server-sent events, until the final one; woken by the
    run on every new event (no polling)."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the server's loop has closed
            pass

    run.subscribe(notify)
    try:
        i = 0
        while True:
            wake.clear()
            while i < len(run.events):
                name, data = run.events[i]
                i += 1
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
                if name in FINAL:
                    return
            try:
                await asyncio.wait_for(wake.wait(), WAIT_SECONDS)
            except asyncio.TimeoutError:
                pass
    finally:
        run.unsubscribe(notify)
