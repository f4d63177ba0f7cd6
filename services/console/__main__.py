"""`python -m services.console`: the console on the bind host and CONSOLE_PORT (the stack runs it: `make up`)."""

from __future__ import annotations

import uvicorn

from pipeline.settings import get_settings
from services.console.app import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.console_port,
        log_level="warning",
        access_log=False,
        workers=1,
    )


if __name__ == "__main__":
    main()
