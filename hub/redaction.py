"""Masking of configured secrets in everything the hub relays or logs.

A server's configured secrets (`secret_values()` of its entry: its `env` and `headers` values,
its bearer token and OAuth client secret, plus the OAuth access token the hub currently holds
for it) must never leave the hub through a path the server controls (SECURITY.md case 23,
OWASP MCP01). A server can put them anywhere, so masking follows the data:

- relayed to clients: `notifications/message` (`data` of any JSON shape: every string inside,
  and the `logger` name), JSON-RPC error `message` and `data` passed through from a server,
  progress messages, and the parameters of server-to-client requests (sampling, elicitation);
- logged by the hub: every log record of the process, at every level (`--debug` included),
  through a log record factory installed once (`install_log_redaction`), so every handler and
  formatter (the hub's own, uvicorn's, pytest's) only ever sees masked text.

What is a secret: each configured value of at least `MIN_SECRET_CHARS` characters, and each
whitespace-separated word of that length inside one (so `Bearer <token>` masks the token when
it appears alone). Shorter values (`TZ: UTC`, `DEBUG: "1"`) would mask common words and are
left alone. A masked secret reads `***`.

Tool results (`CallToolResult` content) are data a tool was asked for and pass unmasked: a tool
whose job is to return a value returns it.

The registry is process-wide (`SECRETS`): every server connection registers its values when it
is created (so a reload's new or changed servers are covered from their first line) and they
are dropped when the connection is garbage-collected.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import mcp_types as types
from mcp import MCPError
from pydantic import BaseModel

__all__ = [
    "MASK",
    "MIN_SECRET_CHARS",
    "SECRETS",
    "SecretRegistry",
    "install_log_redaction",
    "mask_error",
    "mask_json",
    "mask_log_params",
    "mask_model",
    "secret_words",
]

MASK: Final = "***"
"""What a masked secret reads as."""

MIN_SECRET_CHARS: Final = 8
"""Configured values (and words in them) shorter than this are not treated as secrets."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def secret_words(values: Iterable[str]) -> tuple[str, ...]:
    """The strings to mask for configured `values`: each value and each whitespace-separated
    word in it of at least `MIN_SECRET_CHARS` characters, longest first."""
    words = {word for value in values for word in (value, *value.split()) if len(word) >= MIN_SECRET_CHARS}
    return tuple(sorted(words, key=lambda word: (-len(word), word)))


class SecretRegistry:
    """Every configured secret of the process, by owner (a server connection).

    `mask(text)` replaces each registered secret in `text` with `MASK`; one compiled pattern
    serves all owners and is rebuilt only when the set of secrets changes.
    """

    def __init__(self) -> None:
        self._static: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        self._dynamic: weakref.WeakKeyDictionary[object, Callable[[Any], Iterable[str]]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._static_words: frozenset[str] = frozenset()
        self._key: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def register(
        self, owner: object, values: Iterable[str], dynamic: Callable[[Any], Iterable[str]] | None = None
    ) -> None:
        """Mask `values` (configured secrets, see `secret_words`) and whatever `dynamic(owner)`
        returns at the time of each mask (e.g. the current OAuth access token) for as long as
        `owner` is alive (it is held weakly; `dynamic` must not hold it). Installs the
        process-wide log redaction on first use."""
        with self._lock:
            self._static[owner] = secret_words(values)
            if dynamic is not None:
                self._dynamic[owner] = dynamic
            self._static_words = frozenset(word for owned in self._static.values() for word in owned)
        install_log_redaction()

    def forget(self, owner: object) -> None:
        """Stop masking what `owner` registered."""
        with self._lock:
            self._static.pop(owner, None)
            self._dynamic.pop(owner, None)
            self._static_words = frozenset(word for owned in self._static.values() for word in owned)

    def _current(self) -> re.Pattern[str] | None:
        words = self._static_words
        providers = list(self._dynamic.items())
        if providers:
            current = (value for owner, provider in providers for value in provider(owner) if value)
            words = words | frozenset(secret_words(current))
        if words is not self._key and words != self._key:
            ordered = sorted(words, key=lambda word: (-len(word), word))  # longest first: no partial masks
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._key = words
        return self._pattern

    @property
    def active(self) -> bool:
        """Whether any secret is registered (masking is a no-op otherwise)."""
        return self._current() is not None

    def mask(self, text: str) -> str:
        """`text` with every registered secret replaced by `MASK`."""
        pattern = self._current()
        return pattern.sub(MASK, text) if pattern is not None else text


SECRETS: Final = SecretRegistry()
"""The process-wide registry (server connections register into it)."""


def mask_json(value: Any, registry: SecretRegistry = SECRETS) -> Any:
    """`value` (any JSON shape) with every string inside masked, dictionary keys included; the
    same object when nothing changed."""
    if isinstance(value, str):
        return registry.mask(value)
    if isinstance(value, dict):
        masked = {
            registry.mask(key) if isinstance(key, str) else key: mask_json(item, registry)
            for key, item in value.items()
        }
        return value if masked == value else masked
    if isinstance(value, list | tuple):
        items = [mask_json(item, registry) for item in value]
        return value if items == list(value) else items
    return value


def mask_model(model: _ModelT, registry: SecretRegistry = SECRETS) -> _ModelT:
    """An MCP model with every string in it masked (validated again as the same type); `model`
    itself when nothing changed or no secret is registered.

    :raises pydantic.ValidationError: masking broke a constrained field (the caller must then
        not relay the model at all).
    """
    if not registry.active:
        return model
    data = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    masked = mask_json(data, registry)
    if masked is data:
        return model
    return type(model).model_validate(masked, by_name=False)


def mask_log_params(
    params: types.LoggingMessageNotificationParams, registry: SecretRegistry = SECRETS
) -> types.LoggingMessageNotificationParams:
    """A server's `notifications/message` params with `data` (any JSON) and `logger` masked."""
    if not registry.active:
        return params
    data = mask_json(params.data, registry)
    logger_name = registry.mask(params.logger) if params.logger else params.logger
    if data is params.data and logger_name == params.logger:
        return params
    return params.model_copy(update={"data": data, "logger": logger_name})


def mask_error(exc: MCPError, registry: SecretRegistry = SECRETS) -> MCPError:
    """A JSON-RPC error with its `message` and `data` masked (code unchanged); `exc` itself when
    nothing changed."""
    if not registry.active:
        return exc
    message = registry.mask(exc.error.message)
    data = mask_json(exc.error.data, registry)
    if message == exc.error.message and data is exc.error.data:
        return exc
    return MCPError(exc.error.code, message, data)


# ---------------------------------------------------------------- logging

_installed = False
_install_lock = threading.Lock()
_exception_formatter = logging.Formatter()


def _redact_record(record: logging.LogRecord, registry: SecretRegistry) -> None:
    if not registry.active:
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return
    masked = registry.mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = _exception_formatter.formatException(record.exc_info)
        record.exc_text = registry.mask(text)
    if record.stack_info:
        record.stack_info = registry.mask(record.stack_info)


def install_log_redaction(registry: SecretRegistry = SECRETS) -> None:
    """Mask registered secrets in every log record the process creates (idempotent).

    Installs a log record factory around the current one: a record's formatted message (and
    its traceback text) is masked when it is created, before any handler, filter or formatter
    sees it, so no handler can write a secret whichever logger wrote the record.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record, registry)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
