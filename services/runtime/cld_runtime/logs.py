"""Structured logging: one JSON object per line on stderr, and never a value from a record.

Exception messages can quote their input (pydantic, json, csv errors do), so the formatter writes only the
exception's type and the stack frames, never ``str(exc)``. Log calls pass identifiers (topic, partition,
offset, event id, LA code, counts) as ``extra=``, never record values.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_SAFE_TYPES: Final = (str, int, float, bool, type(None))
RATE_LIMITED_LOGGERS: Final = ("aiokafka", "faststream")


class JsonFormatter(logging.Formatter):
    """JSON lines; exceptions as type + frames only (their message may hold personal data)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage() if record.name.startswith("cld") else _framework_message(record),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_") and isinstance(v, _SAFE_TYPES):
                out[k] = v
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _exc, tb = record.exc_info
            out["exc_type"] = exc_type.__name__
            out["exc_frames"] = "".join(traceback.format_tb(tb, limit=8))
        return json.dumps(out, ensure_ascii=False)


def _framework_message(record: logging.LogRecord) -> str:
    """Framework messages (FastStream, aiokafka, uvicorn) are fixed texts; args may hold anything."""
    if record.args and record.name.startswith(("uvicorn.access",)):
        return record.getMessage()  # method, path and status only: our paths carry no personal data
    try:
        return str(record.msg) if not record.args else record.getMessage()[:500]
    except Exception:  # a broken format string must not kill logging
        return str(record.msg)[:500]


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """The same message from a noisy framework logger at most once per ``interval`` seconds.

    A broker outage makes aiokafka and FastStream repeat one error many times a second (a 15 s broker stop
    wrote ~2,400 ERROR lines, issue 10), which buries the one line that matters. WARNING and ERROR records of
    loggers under ``prefixes`` are keyed by (logger, level, message template): the first passes, repeats
    within the interval are dropped and counted, and the first one after the interval carries
    ``suppressed_repeats`` (how many were dropped since the last one written). Other loggers (``cld.*``: they
    log once per change) and DEBUG/INFO lines pass untouched.
    At most ``max_keys`` distinct messages are tracked (the oldest are forgotten).
    """

    def __init__(
        self,
        *,
        prefixes: tuple[str, ...] = RATE_LIMITED_LOGGERS,
        interval: float = 30.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[tuple[str, int, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True  # per-message DEBUG/INFO lines (when asked for) are not what floods an outage
        key = (record.name, record.levelno, str(record.msg)[:300])
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.since < self.interval:
                seen.suppressed += 1
                return False
            if seen is not None and seen.suppressed:
                record.suppressed_repeats = seen.suppressed
            self._seen[key] = _Seen(since=now)
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        return True


def configure_logging(*, service: str, level: str = "INFO", repeat_interval: float = 30.0) -> logging.Logger:
    """Route the root logger (and FastStream's, aiokafka's, uvicorn's) through the JSON formatter; repeats of
    one aiokafka/FastStream message are written at most once per ``repeat_interval`` (``RateLimitFilter``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RateLimitFilter(interval=repeat_interval))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return service_logger(service)


def service_logger(service: str) -> logging.Logger:
    return logging.getLogger(f"cld.{service}")
