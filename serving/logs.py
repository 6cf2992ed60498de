"""Structured JSON logs (structlog) for the API: one access line per request (serving/edge.py writes it)
with its request id, the caller's role and id, route, status and latency; every other log line (uvicorn,
SQLAlchemy, ours) goes through the same processors to the same stream. Secrets never reach a line: API
keys, key hashes and resident ID numbers are masked wherever they appear, whoever logged them.

The access line is on every request's path, so it skips structlog's processor chain when the lines are
JSON (one dict with the same keys and masking as any other line, one `orjson.dumps`), and the lines of
the requests served within `FLUSH_SECONDS` leave in one write instead of a system call each (at most
`FLUSH_BYTES` a write: a pipe shared by several workers never splits a line). The request id is bound
in one ContextVar of our own, read by a processor, rather than through structlog's contextvars (a
context copy and a scan of every variable per line), and text that cannot hold a secret skips the
masking pattern. With the once-a-second timestamp format, the access log's instructions per request
fell from 135k to 69k (callgrind, the middleware around an empty app)."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import threading
import time
from collections import deque
from contextvars import ContextVar
from random import getrandbits

import orjson
import structlog

REQUEST_ID_HEADER = b"x-request-id"
ACCESS_LOGGER = "crosscart.access"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# API keys (cc_ + 43 url-safe base64 chars), SHA-256 hex digests (key hashes, in either case), resident ID
# numbers (18 characters, not part of a longer number); wherever they stand, glued to other text too (a
# request id `h<digest>`, a path `/ID<number>`): no word boundary is asked for. A string shorter than the
# shortest of them (18 characters) cannot hold one and is not scanned
_SECRETS = re.compile(r"cc_[A-Za-z0-9_-]{20,}|[0-9a-fA-F]{64}|(?<!\d)(?:\d{18}(?!\d)|\d{17}[Xx])")
_SHORTEST_SECRET = 18
_DIGIT_RUN = re.compile(r"\d{17}")  # what an ID number needs; far quicker to rule out than _SECRETS
# ... and quicker still without a pattern: in ASCII text (`\d` is any Unicode digit, so other text goes to
# the pattern), digits become "0" and the rest " " in one C pass, then a substring test (about 1 us for
# an access line against 8 us for the pattern, which tries every position)
_ASCII_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_ZEROS = b"0" * 17
MASK = "[redacted]"
FLUSH_SECONDS = 0.05  # an access line reaches the stream this long after its request at the latest
FLUSH_BYTES = 4000  # below PIPE_BUF (4096): one write to a pipe is never interleaved with another's
BACKLOG_BYTES = 1 << 20  # log text waiting for a stream that does not keep up; past it lines are dropped
WRITER_IDLE_SECONDS = 10.0  # a writer thread with nothing to write this long ends
DRAIN_SECONDS = 2.0  # the longest a flush (at shutdown, or a test reading the stream) waits for the writer


def _digit_run(text: str) -> bool:
    """Whether `text` holds 17 digits in a row (`_DIGIT_RUN`)."""
    if text.isascii():
        return _ZEROS in text.encode().translate(_ASCII_DIGITS)
    return _DIGIT_RUN.search(text) is not None


def redact(text: str) -> str:
    # a key needs "cc_", a digest 64 characters, an ID number 17 digits in a row: most text has none
    if "cc_" in text or len(text) >= 64 or _digit_run(text):
        return _SECRETS.sub(MASK, text)
    return text


def _json(event: dict, default) -> str:
    """structlog's JSON serializer: orjson, or the json module for what orjson refuses (integers beyond 64
    bits): a log call never fails."""
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event, default=default)


# the running request's id (set by serving/edge.py): every line logged while it runs carries it
REQUEST_ID: ContextVar[str | None] = ContextVar("crosscart_request_id", default=None)


def _add_request_id(_, __, event: dict) -> dict:
    """Every line logged while a request runs carries its id."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


_second: tuple[int, str] = (-1, "")  # the last second stamped, formatted


def _timestamp() -> str:
    """What structlog's `TimeStamper(fmt="iso", utc=True)` writes (with the microseconds even when 0),
    formatting the date and time once a second rather than once a line."""
    global _second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{micros:06d}Z"


def _redact_event(_, __, event: dict) -> dict:
    for name, value in event.items():
        if isinstance(value, str) and len(value) >= _SHORTEST_SECRET:
            event[name] = redact(value)
    return event


class QueuedStreamHandler(logging.StreamHandler):
    """The root handler: what is logged is queued (at most BACKLOG_BYTES) and written to `stream` by a
    daemon thread, one write and flush per queued text, so a write never splits a line. Written on the
    logging thread (the event loop, for the access lines), a stream that stopped taking lines (a stuck
    log collector with the pipe full, a stalled disk) held the whole API; now it costs lines, counted,
    and the count is written once the stream takes lines again."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self.dropped = 0
        self._queue: deque[str] = deque()
        self._size = 0
        self._writing = False
        self._ready = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.enqueue(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def enqueue(self, text: str) -> None:
        with self._ready:
            if self._size + len(text) > BACKLOG_BYTES:
                self.dropped += text.count("\n") or 1
                return
            self._queue.append(text)
            self._size += len(text)
            if self._writer is None or not self._writer.is_alive():  # first use, or after a fork
                self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
                self._writer.start()
            self._ready.notify()

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until what was queued is written (at most `timeout`); False if it was not."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._queue and not self._writing, timeout)

    def _write_forever(self) -> None:
        while True:
            with self._ready:
                self._writing = False
                self._ready.notify_all()
                if not self._ready.wait_for(lambda: self._queue, WRITER_IDLE_SECONDS):
                    self._writer = None  # idle: the next line starts another
                    return
                text, dropped = self._queue.popleft(), self.dropped
                self._size -= len(text)
                self.dropped, self._writing = 0, True
            if dropped:
                text = _dropped_line(dropped) + text
            stream = self.stream
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: as `logging` does, logging goes on
                pass


def _dropped_line(count: int) -> str:
    fields = {"event": "log lines dropped: the log stream did not keep up", "dropped": count}
    fields.update(level="error", logger=__name__, timestamp=_timestamp())
    return orjson.dumps(fields).decode() + "\n"


class _HandlerStream:
    """structlog's output: each rendered line goes to the root handler that renders the other libraries'
    records (its queue, so lines of the two never interleave and redirecting the handler with
    `setStream` moves both)."""

    def __init__(self, handler: QueuedStreamHandler, name: str | None):
        self.handler, self.name = handler, name

    def msg(self, line: str) -> None:
        self.handler.enqueue(line + "\n")

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _AccessLines:
    """Where `log_access` sends the access lines, as `configure_logging` last set it up: rendered here and
    written in batches when the format is JSON and the level lets info through, else through structlog
    (terminal text, one line at a time)."""

    def __init__(self, stream: _HandlerStream, level: int, json_format: bool):
        self.stream, self.enabled = stream, level <= logging.INFO
        self.console = None if json_format else structlog.get_logger(ACCESS_LOGGER)
        self.pending: list[str] = []
        self.size = 0

    def write(self, fields: dict) -> None:
        if self.console is not None:
            self.console.info("request", **fields)
            return
        if not self.enabled:
            return
        # `redact`'s quick test on every field at once (their text joined by line breaks, which no secret
        # holds; numbers and None as text can only make it pass); only when it passes are the caller's
        # fields masked one by one (ours below hold no secret). All in C: no Python step a field.
        texts = list(map(str, fields.values()))
        joined = "\n".join(texts)
        if "cc_" in joined or max(map(len, texts)) >= 64 or _digit_run(joined):
            _redact_event(None, None, fields)
        fields["event"], fields["level"], fields["logger"] = "request", "info", ACCESS_LOGGER
        fields["timestamp"] = _timestamp()
        line = orjson.dumps(fields).decode()  # str, int, float and None: orjson takes them all
        if self.size + len(line) >= FLUSH_BYTES:
            self.flush()
        self.pending.append(line)
        self.size += len(line) + 1
        if len(self.pending) == 1:  # the first of a batch: it leaves within FLUSH_SECONDS
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # not on an event loop: nothing would come back to write it
                self.flush()

    def flush(self) -> None:
        with self.stream.handler.lock:
            lines, self.pending, self.size = self.pending, [], 0
            if lines:
                self.stream.msg("\n".join(lines))


_access_lines: _AccessLines | None = None


def flush_access_lines() -> None:
    """Write the access lines still waiting for their batch, and wait (at most DRAIN_SECONDS) for what
    is queued to reach the stream (at shutdown; tests reading the stream)."""
    if _access_lines is not None:
        _access_lines.flush()
        _access_lines.stream.handler.drain()


atexit.register(flush_access_lines)


def configure_logging(level: str = "info", json_format: bool = True) -> None:
    """Render structlog's lines and the standard library's records with the same processors (JSON lines,
    or coloured text for a terminal) onto one stream; idempotent, so every app built in a process may
    call it. Loggers obtained earlier keep the configuration they were first used with."""
    global _access_lines
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_crosscart", False)), None)
    if handler is None:
        handler = QueuedStreamHandler()
        handler._crosscart = True
        root.addHandler(handler)
    renderer = (
        structlog.processors.JSONRenderer(serializer=_json)
        if json_format
        else structlog.dev.ConsoleRenderer()
    )
    # exceptions are text before the redaction sees them; level, logger name and time are ours, not scanned
    redacted = [structlog.processors.format_exc_info, _redact_event]
    stamped = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    context = [structlog.contextvars.merge_contextvars, _add_request_id]
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*context, *redacted, *stamped, renderer],
        logger_factory=lambda name=None, *_: _HandlerStream(handler, name),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*context, *redacted, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))  # fmt: skip
    flush_access_lines()  # the previous configuration's
    _access_lines = _AccessLines(_HandlerStream(handler, ACCESS_LOGGER), numeric, json_format)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The access line is ours (CROSSCART_ACCESS_LOG). uvicorn's protocols write theirs whenever
    # "uvicorn.access" has a handler, its ancestors' included: a propagating logger doubled every line.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False


def request_id_of(headers) -> str:
    """The request's id: its valid `X-Request-ID`, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            given = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(given):
                return given
            break
    # a label, not a secret: 128 random bits without a system call (`os.urandom` is one, 2 us in a VM)
    return f"{getrandbits(128):032x}"


def log_access(scope, request_id: str, status: int, started: float) -> str | None:
    """Write the request's access line (its latency from `started`, a `time.perf_counter()`), with its
    batch within FLUSH_SECONDS (the last batch when the app shuts down); returns the route template."""
    route = route_template(scope)
    lines = _access_lines
    if lines is None:  # logging never configured: nowhere to write
        return route
    principal = scope.get("state", {}).get("principal")
    lines.write(
        {
            "request_id": request_id,
            "method": scope["method"],
            "route": route,
            "path": scope["path"],
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "role": getattr(principal, "role", None),
            "key_id": getattr(principal, "key_id", None),
            "shopper_id": getattr(principal, "shopper_id", None),
            "merchant_id": getattr(principal, "merchant_id", None),
        }
    )
    return route


def route_template(scope) -> str | None:
    """The matched route as a template (`/v1/shoppers/{shopper_id}/orders`): FastAPI records the route
    object without the prefixes of the routers it was included through, so put the matched prefix back."""
    route, path = scope.get("route"), scope["path"]
    regex = getattr(route, "path_regex", None)
    if regex is None:  # unmatched, or the fast path's full template (serving/fastpath.py)
        return getattr(route, "path", None)
    for cut in (i for i, ch in enumerate(path) if ch == "/"):
        if regex.fullmatch(path[cut:]):
            return path[:cut] + route.path
    return route.path
