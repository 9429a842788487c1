"""The only module that speaks HTTP: one execute-campaign POST, classified for the ledger.

The API has no idempotency key, so a request is retried only when it provably was
not processed: it never left this process, or the answer was 429/503. Anything
that may have been processed is ``unknown`` and is never sent again from here.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from xpdeploy import __version__
from xpdeploy.canonical import MASK, mask_secrets
from xpdeploy.outcome import Outcome

EXECUTE_PATH = "/api/external/execute/campaign"

# Raised before any byte of the request was written: safe to send again.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Raised while building the request, before any connection: a definite local failure.
_NEVER_SENT = (httpx.UnsupportedProtocol, httpx.InvalidURL)
_RETRY_STATUSES = frozenset({429, 503})
_MAX_MESSAGE = 300

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Retryable:
    """An attempt that provably was not processed and may be tried again."""

    http_status: int | None
    response: Any
    reason: str
    retry_after: float | None


class ExecuteClient:
    """POSTs execute-campaign requests; thread-safe, one connection pool per client."""

    def __init__(
        self,
        base_url: str,
        apptoken: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_retry_seconds: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._apptoken = apptoken
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_retry_seconds = max_retry_seconds
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._random = random.Random()  # noqa: S311 -- jitter, not cryptography
        # One connection pool per thread: parallel sends then never share a pool, whose
        # bookkeeping could close one thread's connection under another (seen as EBADF
        # after the request was written: a needless `unknown`).
        self._local = threading.local()
        self._pools: list[httpx.Client] = []
        self._pools_lock = threading.Lock()
        self._closed = False

    def _http(self) -> httpx.Client:
        pool: httpx.Client | None = getattr(self._local, "pool", None)
        if pool is None:
            with self._pools_lock:
                if self._closed:
                    raise RuntimeError("the client is closed")
                pool = httpx.Client(
                    timeout=httpx.Timeout(self._timeout),
                    # No keep-alive: a reused connection that the server closed while idle
                    # fails after the request was written: a needless `unknown`.
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": f"xpdeploy/{__version__}",
                    },
                    follow_redirects=False,
                )
                self._pools.append(pool)
            self._local.pool = pool
        return pool

    def __repr__(self) -> str:
        return f"ExecuteClient(base_url={self.base_url!r}, apptoken={MASK!r})"

    def __enter__(self) -> ExecuteClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        with self._pools_lock:
            self._closed = True
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.close()

    def execute(self, body: dict[str, Any]) -> Outcome:
        """POST one execute-campaign request (with the apptoken added) and classify the result."""
        try:
            content = json.dumps({**body, "apptoken": self._apptoken}).encode()
        except (TypeError, ValueError) as exc:
            return Outcome("failed", None, None, f"not sent: body is not JSON ({exc})", 0)
        started, slept, attempt = time.monotonic(), 0.0, 0
        while True:
            attempt += 1
            result = self._attempt(content, attempt)
            if isinstance(result, Outcome):
                _log.debug("execute attempt %d: %s", attempt, result.message)
                return result
            delay, why = self._next_delay(result, attempt, started, slept)
            if why:
                message = f"not sent ({result.reason}): gave up after {attempt} attempt(s), {why}"
                message += "; safe to send again later"
                return Outcome("failed", result.http_status, result.response, message, attempt)
            _log.info("execute attempt %d: %s; retrying in %.2fs", attempt, result.reason, delay)
            self._sleep(delay)
            slept += delay

    def _next_delay(
        self, result: _Retryable, attempt: int, started: float, slept: float
    ) -> tuple[float, str]:
        """Seconds to wait before the next attempt, or a reason to stop trying."""
        budget = self._max_retry_seconds
        # A fake sleep does not move the clock, so what was slept counts as spent too.
        remaining = budget - max(time.monotonic() - started, slept)
        wait = result.retry_after
        if attempt >= self._max_attempts:
            return 0.0, "the attempt limit"
        if wait is not None and wait > remaining:
            return 0.0, f"the server asked to wait {wait:g}s, beyond the {budget:g}s retry budget"
        if wait is not None:
            delay = min(wait, self._backoff_cap)
        else:  # exponential backoff with full jitter
            delay = self._random.uniform(
                0, min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
            )
        if delay > remaining:
            return 0.0, f"the {budget:g}s retry budget is used up"
        return delay, ""

    def _attempt(self, content: bytes, attempt: int) -> Outcome | _Retryable:
        try:
            response = self._http().post(self.base_url + EXECUTE_PATH, content=content)
        except _NOT_SENT as exc:
            return _Retryable(None, None, self._describe(exc), None)
        except _NEVER_SENT as exc:
            return Outcome("failed", None, None, f"not sent: {self._describe(exc)}", attempt)
        except httpx.HTTPError as exc:
            # Read/write timeouts, resets, a half-read response: the API may have acted.
            message = f"{self._describe(exc)} after the request was sent; outcome unknown"
            return Outcome("unknown", None, None, message, attempt)
        return self._classify(response, attempt)

    def _classify(self, response: httpx.Response, attempt: int) -> Outcome | _Retryable:
        code = response.status_code
        try:
            data = self._redact(json.loads(response.content))
        except (ValueError, RecursionError):  # not JSON (or not UTF-8, or nested too deeply)
            data = None
        summary = self._summary(code, data, response)
        if code in _RETRY_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return _Retryable(code, data, summary, retry_after)
        if 200 <= code < 300:
            success = data.get("success") if isinstance(data, dict) else None
            if isinstance(success, str):
                success = {"true": True, "false": False}.get(success.strip().lower())
            if success is True:
                return Outcome("applied", code, data, summary, attempt)
            if success is False:
                return Outcome("failed", code, data, summary, attempt)
            why = "not JSON" if data is None else "without a success flag"
            return Outcome("unknown", code, data, f"{summary} ({why}); outcome unknown", attempt)
        if 400 <= code < 500:
            return Outcome("failed", code, data, summary, attempt)
        # 5xx other than 503, and redirects: the API may have processed the request.
        return Outcome("unknown", code, data, f"{summary}; outcome unknown, not retried", attempt)

    def _summary(self, code: int, data: Any, response: httpx.Response) -> str:
        """One line for people: the envelope's message and errors, or a snippet of the body."""
        text = response.reason_phrase or "no reason given"
        if isinstance(data, dict) and (data.get("message") or data.get("errors")):
            text = str(data.get("message") or "")
            errors = data.get("errors")
            if errors and errors != [text]:
                extra = (
                    json.dumps(errors, ensure_ascii=False)
                    if not isinstance(errors, str)
                    else errors
                )
                text = f"{text} {extra}".strip()
        elif data is None and response.content.strip():
            text = f"{text}: {self._redact(response.content.decode('utf-8', 'replace'))!r}"
        return self._one_line(f"HTTP {code}: {text}")

    def _describe(self, exc: Exception) -> str:
        """An httpx error as one token-free line (httpx messages carry no body, but be sure)."""
        detail = str(exc) or "no detail"
        if isinstance(exc, httpx.TimeoutException):
            detail = f"no progress within {self._timeout:g}s"
        return self._one_line(f"{type(exc).__name__}: {self._redact(detail)}")

    def _one_line(self, text: str) -> str:
        text = " ".join(str(self._redact(text)).split())
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."

    def _redact(self, value: Any) -> Any:
        """A copy of a JSON value with the apptoken masked wherever it appears."""
        return mask_secrets(value, [self._apptoken])


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
