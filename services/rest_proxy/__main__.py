"""`python -m services.rest_proxy`: serve the proxy on the host/port of settings.rest_proxy_url."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import uvicorn

from pipeline.settings import get_settings
from services.rest_proxy.app import create_app
from services.rest_proxy.fast_path import FastProducePath


def main() -> None:
    settings = get_settings()
    address = urlsplit(settings.rest_proxy_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        FastProducePath(create_app(settings)),
        host=settings.bind_host,
        port=address.port or 8082,
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
