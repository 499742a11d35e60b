"""`dnma serve`: the collector under uvicorn (uvloop + httptools, guarded by collector.connection),
settings.collector_workers worker processes sharing one port, Prometheus multiprocess metrics
across them; `create_app` wires the aggregator's reporting queries into the collector's Matomo API.
"""

from __future__ import annotations

import argparse
import os

from collector.app import Collector
from dnma import logs
from dnma.settings import get_settings


def create_app() -> Collector:
    """uvicorn factory (`cli.serve:create_app`): one Collector per worker process, answering the
    reporting API with the aggregator's queries."""
    from aggregator import reporting
    from collector.reporting_routes import report_methods

    settings = get_settings()
    logs.setup_logging(settings)  # again in each worker: a spawned worker starts with no logging set
    return Collector(settings, api_methods=report_methods(reporting))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default: settings.collector_host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: settings.collector_port)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: settings.collector_workers)"
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from collector.connection import GuardedHttpToolsProtocol, limits
    from collector.metrics import prepare_multiprocess_dir

    settings = get_settings()
    logs.setup_logging(settings)
    host = args.host or settings.collector_host
    port = args.port or settings.collector_port
    workers = args.workers or settings.collector_workers
    # Before any worker imports prometheus_client: counters go to per-process files there.
    prepare_multiprocess_dir(settings.data_dir / "prometheus" / f"collector-{port}")
    os.environ.setdefault("DNMA_DATA_DIR", str(settings.data_dir))
    limits()  # raises the file limit the workers inherit, if it must, and says when it is too low
    uvicorn.run(
        "cli.serve:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,  # httptools with header/body deadlines, a head cap, a connection bound
        timeout_keep_alive=settings.collector_keep_alive_timeout_s,
        lifespan="on",
        access_log=False,  # access logs would hold client IPs and full query strings
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is read by the app, only if trust_x_forwarded_for
        log_config=None,  # keep the logging configured above
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0
