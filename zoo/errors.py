"""Typed errors of the zoo, in one place.

Each error also subclasses the builtin a caller would naturally catch (``ValueError``,
``FileNotFoundError``, ...), as huggingface_hub does, and carries the exit code the CLI maps it
to. The CLI turns any ``ZooError`` into one line on stderr in ONE place (``zoo.cli.main``).
"""

from __future__ import annotations


class ZooError(Exception):
    """Base of every error the zoo raises on purpose."""

    exit_code: int = 1


class ConfigError(ZooError, ValueError):
    """A configuration value is invalid (names the field, the value and what is allowed).

    ``field`` is the offending field's name when one field is to blame, so a job spec can
    report it under its path (``train.lr: …``)."""

    exit_code = 2

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SpecError(ConfigError):
    """A job spec is invalid; the message starts with the field path."""


class AdapterFormatError(ZooError, ValueError):
    """An adapter file is not a valid zoo adapter (wrong format, version, shapes, pickle...)."""

    exit_code = 3


class AdapterMismatchError(ZooError, ValueError):
    """An adapter does not fit the base model it is attached to."""

    exit_code = 3


class NotFoundError(ZooError, LookupError):
    """A reference (adapter id, prefix, name@alias, job id, blob) resolves to nothing."""

    exit_code = 4


class AmbiguousRefError(ZooError, LookupError):
    """A reference (e.g. an id prefix) matches more than one object."""

    exit_code = 4


class IntegrityError(ZooError, OSError):
    """Stored bytes do not match their digest (corruption, truncation)."""

    exit_code = 5


class QuerySyntaxError(ZooError, ValueError):
    """A catalog query string cannot be parsed; the message points at the offending term."""

    exit_code = 2


class SchemaVersionError(ZooError, RuntimeError):
    """The catalog schema is newer than this code, or not initialised."""

    exit_code = 6


class StoreError(ZooError, OSError):
    """The object store failed after retries."""

    exit_code = 7


class JobError(ZooError, RuntimeError):
    """A job failed, was cancelled, or cannot change state as asked."""

    exit_code = 8


class InvalidNameError(ConfigError):
    """A name, tag or alias is not allowed (traversal, bad characters, too long...)."""


class ConflictError(ZooError, ValueError):
    """A write contradicts what the catalog holds (e.g. a job id that already published)."""

    exit_code = 9


class DataError(ConfigError):
    """A training or evaluation data file is missing, empty or malformed (names file and line)."""


class TrainingStopped(JobError):
    """Training was stopped on request (``should_stop``) before it finished; nothing was produced."""


class CatalogBusyError(ZooError, TimeoutError):
    """The catalog stayed locked by other writers longer than the retry budget."""

    exit_code = 10


class AuthError(ZooError, PermissionError):
    """The team server refused a request: no token, a bad, revoked or expired one (HTTP 401),
    or one whose scope or name prefix does not allow it (HTTP 403)."""

    exit_code = 11


class ForbiddenError(AuthError):
    """The token is valid but its scope or name prefix does not allow this (HTTP 403)."""


class ServerError(ZooError, ConnectionError):
    """The team server (``ZOO_URL``) cannot be reached or answered without an error body."""

    exit_code = 7
