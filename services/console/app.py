"""The console's web app: server-rendered pages (Jinja2) and one JSON endpoint the flow page polls.

Read-only: every route is a GET and nothing here writes to the stack. Everything it serves is local (templates and
static files in this package; no CDN). Host and Origin are checked like the REST proxy's (services/http_guard.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pipeline import layout
from pipeline.settings import TABLES, Settings
from services.console import sources
from services.console.flow import Readers, flow
from services.console.trace import trace
from services.http_guard import guard

HERE = Path(__file__).parent
PAGE_ROWS = 50
OBJECT_PREVIEW_BYTES = 256 * 1024


def create_app(settings: Settings) -> FastAPI:
    readers = Readers(settings)
    app = FastAPI(title="pipeline console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["pretty"] = _pretty
    templates.env.filters["urlquote"] = lambda value: quote(str(value), safe="")

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            template,
            {"settings": settings, "tables": TABLES, "active": template.removesuffix(".html"), **context},
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:  # browsers ask for it on every page, the report's too
        return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    def flow_page(request: Request, refresh: float = Query(1.0, ge=0.5, le=60)):
        return page(request, "flow.html", refresh_ms=int(refresh * 1000))

    @app.get("/api/flow")
    def flow_json() -> JSONResponse:
        return JSONResponse(flow(readers))

    @app.get("/topics", response_class=HTMLResponse)
    def topics(request: Request, topic: str | None = None, limit: int = Query(20, ge=1, le=500)):
        names = [settings.topic(table) for table in TABLES]
        if topic is not None and topic not in names:
            raise HTTPException(404, f"unknown topic {topic!r}; the pipeline's topics are {', '.join(names)}")
        messages = sources.recent_messages(settings, topic, limit) if topic else []
        return page(request, "topics.html", names=names, topic=topic, messages=messages, limit=limit)

    @app.get("/bucket", response_class=HTMLResponse)
    def bucket(request: Request, prefix: str = "", token: str | None = None):
        listing = sources.list_objects(settings, prefix, token)
        parent = prefix.rstrip("/").rpartition("/")[0] + "/" if "/" in prefix.rstrip("/") else ""
        return page(request, "bucket.html", prefix=prefix, parent=parent, listing=listing)

    @app.get("/bucket/object", response_class=HTMLResponse)
    def bucket_object(request: Request, key: str):
        body, size = _object(settings, key, OBJECT_PREVIEW_BYTES)
        text = body.decode("utf-8", errors="replace")
        lines = [_pretty_line(line) for line in text.splitlines()] if key.endswith(".json") else None
        return page(request, "object.html", key=key, size=size, shown=len(body), text=text, lines=lines)

    @app.get("/bucket/download")
    def bucket_download(key: str) -> Response:
        body, _ = _object(settings, key, 512 * 1024 * 1024)
        filename = key.rpartition("/")[2] or "object"
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
        )

    @app.get("/delta", response_class=HTMLResponse)
    def delta(request: Request, table: str | None = None, limit: int = Query(PAGE_ROWS, ge=1, le=1000)):
        summary, error = readers.delta_memo.get()
        rows: list[dict[str, Any]] = []
        if table is not None:
            if table not in readers.delta.names():
                raise HTTPException(404, f"unknown Delta table {table!r}")
            rows = readers.delta.query(table, f"select * from t order by arrival_time desc limit {limit}")
        return page(request, "delta.html", summary=summary or {}, error=error, table=table, rows=rows)

    @app.get("/quarantine", response_class=HTMLResponse)
    def quarantine(request: Request):
        stream = readers.delta.query(
            settings.stream_quarantine_table,
            "select source_table, reason, count(*) as records from t group by source_table, reason "
            "order by source_table, records desc",
        )
        last, error = readers.results_memo.get()
        summary = (last or {}).get("quarantine") or {"tables": {}}
        batch = {}
        for table in TABLES:
            counted = summary["tables"].get(table, {})
            _, samples, _ = sources.read_parquet_prefix(
                settings, layout.quarantine_path(layout.RESULTS_DIR, table) + "/", limit=5
            )
            batch[table] = {
                "total": counted.get("quarantined", 0),
                "reasons": counted.get("reasons", {}),
                "samples": samples,
            }
        return page(request, "quarantine.html", stream=stream, batch=batch, run=summary.get("run_id"), error=error)

    @app.get("/results", response_class=HTMLResponse)
    def results(request: Request, name: str | None = None):
        last, error = readers.results_memo.get()
        counts = (last or {}).get("counts")
        columns: list[str] = []
        rows: list[dict[str, Any]] = []
        if name is not None:
            if name not in layout.QUERY_NAMES:
                raise HTTPException(404, f"unknown result {name!r}")
            columns, rows, _ = sources.read_parquet_prefix(settings, layout.result_prefix(name), limit=500)
        report, _ = readers.report_memo.get()
        return page(
            request,
            "results.html",
            counts=counts or {},
            error=error,
            name=name,
            columns=columns,
            rows=rows,
            report=report,
            names=layout.QUERY_NAMES,
        )

    @app.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        key = layout.report_path(layout.RESULTS_DIR)
        body, _ = _object(settings, key, 64 * 1024 * 1024)
        return HTMLResponse(body.decode("utf-8", errors="replace"))

    @app.get("/trace", response_class=HTMLResponse)
    def trace_page(request: Request, ind: int | None = None, run: str | None = None):
        result = trace(readers, ind, run or None) if ind is not None else None
        return page(request, "trace.html", ind=ind, run=run, result=result)

    @app.get("/api/trace")
    def trace_json(ind: int, run: str | None = None) -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(trace(readers, ind, run), default=str)))

    @app.get("/services", response_class=HTMLResponse)
    def services_page(request: Request):
        from services.console.health import health

        return page(request, "services.html", services=health(settings), links=_links(settings))

    @app.get("/services/log", response_class=PlainTextResponse)
    def service_log(name: str, lines: int = Query(200, ge=1, le=5000)) -> str:
        from services.console.health import log_tail

        return log_tail(settings, name, lines)

    return guard(app, settings.console_allowed_host_names)


def _object(settings: Settings, key: str, limit: int) -> tuple[bytes, int]:
    try:
        return sources.read_object(settings, key, limit)
    except ClientError as error:
        if sources.is_missing(error, also=("InvalidRange",)):  # an empty object has no byte range to read
            raise HTTPException(404, f"no object {key!r} in bucket {settings.bucket}") from None
        raise


def _pretty(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=1, default=str)
    return "" if value is None else str(value)


def _pretty_line(line: str) -> str:
    try:
        return json.dumps(json.loads(line), ensure_ascii=False)
    except ValueError:
        return line


def _links(settings: Settings) -> dict[str, str]:
    host = settings.console_url.rsplit(":", 1)[0]
    return {
        "Airflow UI": f"{host}:{settings.airflow_port}",
        "Spark UI (a running job's driver)": f"{host}:{settings.spark_ui_port}",
        "Spark master UI (Docker mode's cluster)": f"{host}:{settings.spark_master_ui_port}",
    }
