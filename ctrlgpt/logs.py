"""Structured logs: one JSON object per line on stderr, the same shape for every service.

Records from libraries that use stdlib logging (faust, transformers, uvicorn) go
through the same renderer, so a log file never mixes formats. An exception nobody caught,
in the main thread or any other, is logged too (`uncaught_exception`, with its traceback in
`exception`) instead of Python's plain-text traceback. On a terminal (`log_format` auto) the
same events are rendered for people, one readable line each.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Literal, TextIO

import structlog

Format = Literal["auto", "json", "console"]

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def renderer(fmt: Format, stream: object = sys.stderr) -> structlog.typing.Processor:
    """JSON for machines (log files, collectors); a readable line for a person at a terminal."""
    console = fmt == "console" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    if console:
        return structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
    return structlog.processors.JSONRenderer()


def configure(
    service: str, level: str = "INFO", fmt: Format = "auto", stream: TextIO | None = None
) -> structlog.stdlib.BoundLogger:
    """Every log line of this process to `stream` (default stderr) in `fmt`."""
    numeric = logging.getLevelName(level.upper())
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    final = renderer(fmt, stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # The console renderer prints the traceback itself; JSON carries it as a string.
                *([] if isinstance(final, structlog.dev.ConsoleRenderer) else [structlog.processors.format_exc_info]),
                final,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    # Client libraries log every request at INFO: keep their warnings, not their chatter.
    for chatty in ("httpx", "httpcore", "elastic_transport", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, numeric))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return structlog.get_logger()


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)  # Ctrl-C: Python's own short message
        return
    structlog.get_logger().critical("uncaught_exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what threading's own hook ignores too
    structlog.get_logger().critical(
        "uncaught_exception",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
