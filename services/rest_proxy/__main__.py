"""`python -m services.rest_proxy`: serve the proxy on the host/port of settings.rest_proxy_url."""

from __future__ import annotations

import gc
import logging

import uvicorn

from pipeline.settings import get_settings
from services.rest_proxy.app import serve

# Young-generation GC threshold (CPython's default is 700 allocations). A 100-record produce request allocates
# about 800 tracked containers (parsed rows, records, callbacks, response entries), none of them in cycles, so the
# default ran a young collection per request and a full one every ~100 requests over the whole heap of FastAPI,
# pydantic and uvicorn (its cost under load: docs/design/rest_proxy.md).
GC_YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """Take everything alive after startup out of the collector's view, and make young collections rarer.

    Modules, routes and models live as long as the process; after `gc.freeze()` no full collection traverses them
    again. Request objects that do form cycles (asyncio tasks and futures) are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = serve(settings)
    freeze_startup_heap()
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=settings.rest_proxy_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        timeout_keep_alive=30,
        backlog=4096,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
