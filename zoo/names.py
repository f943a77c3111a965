"""Validation of adapter names, tags, aliases and references — before any I/O or write.

Allowed characters (after Unicode NFC normalisation):

- names and alias labels: Unicode letters and digits (``str.isalnum``: ``sentiment``, ``Модель``,
  ``模型`` are fine) plus ``-``, ``_`` and ``.``; must start with a letter or digit; no ``..``;
  at most 200 characters and 150 bytes of UTF-8 (a name becomes part of file names on pull).
- tags: ``label`` or ``key=value``; the key follows the name rules, the value may also use
  ``:``, ``+`` and ``,`` and may be empty only in the ``label`` form; at most 256 characters.

Everything else is rejected with a message naming the offending character as ``U+XXXX``
(so even a lone surrogate or a bidi override prints safely): path separators ``/`` and ``\\``,
absolute paths, whitespace, control and format characters, emoji, ``@`` inside a name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from zoo.errors import InvalidNameError, NotFoundError

MAX_NAME = 200
# A name becomes part of file names on pull (``.<name>-<id>-merged.safetensors.<rand>
# .incomplete`` and its temp siblings add ~100 bytes) and file names are at most 255 BYTES:
# a longer name would be accepted at push and fail at every pull.
MAX_NAME_BYTES = 150
MAX_TAG = 256
ID_LENGTH = 26
MIN_PREFIX = 4
_NAME_EXTRA = frozenset("-_.")
_VALUE_EXTRA = frozenset("-_.:+,")
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_ID_RE = re.compile(f"^[{ID_ALPHABET}]+$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def _show(text: str, limit: int = 60) -> str:
    """A safe, short rendering of user input for error messages."""
    shown = text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
    return ascii(shown) if not shown.isprintable() else repr(shown)


def _bad_char(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        name = unicodedata.category(ch)
    return f"U+{ord(ch):04X} ({name})"


def _check_chars(what: str, text: str, extra: frozenset[str], *, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise InvalidNameError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text = unicodedata.normalize("NFC", text)
    except (TypeError, ValueError):  # pragma: no cover - normalize accepts any str
        raise InvalidNameError(f"{what} {_show(text)} is not valid Unicode") from None
    if not text:
        if allow_empty:
            return text
        raise InvalidNameError(f"{what} must not be empty")
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise InvalidNameError(f"{what} {_show(text)} looks like an absolute path; not allowed")
    if ".." in text:
        raise InvalidNameError(f"{what} {_show(text)} contains '..' (path traversal); not allowed")
    for ch in text:
        if not (ch.isalnum() or ch in extra):
            allowed = "letters, digits and " + " ".join(sorted(extra))
            raise InvalidNameError(
                f"{what} {_show(text)} contains {_bad_char(ch)}; allowed: {allowed}"
            )
    return text


def validate_name(name: str, what: str = "name") -> str:
    """Return the NFC-normalised name or raise InvalidNameError saying what is wrong."""
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise InvalidNameError(f"{what} is {len(name)} characters long; at most {MAX_NAME}")
    name = _check_chars(what, name, _NAME_EXTRA)
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidNameError(f"{what} is {size} bytes in UTF-8; at most {MAX_NAME_BYTES} "
                               "(it becomes part of file names when pulled)")
    if not name[0].isalnum():
        raise InvalidNameError(f"{what} {_show(name)} must start with a letter or digit")
    return name


@dataclass(frozen=True, order=True)
class Tag:
    """A parsed tag; a plain label has ``value == ''``."""

    key: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.key}={self.value}" if self.value else self.key


def parse_tag(text: str) -> Tag:
    """``label`` or ``key=value`` -> Tag, validated."""
    if not isinstance(text, str):
        raise InvalidNameError(f"tag must be a string, got {type(text).__name__}")
    if len(text) > MAX_TAG:
        raise InvalidNameError(f"tag is {len(text)} characters long; at most {MAX_TAG}")
    key, sep, value = text.partition("=")
    key = validate_name(key, "tag key")
    if sep and not value:
        raise InvalidNameError(f"tag {_show(text)} has an empty value; use a plain label instead")
    value = _check_chars("tag value", value, _VALUE_EXTRA, allow_empty=True)
    return Tag(key, value)


def parse_tags(texts: object) -> list[Tag]:
    """Parse and dedupe many tags, sorted (a stable lock order for concurrent writers)."""
    if isinstance(texts, str):
        texts = [texts]
    return sorted({parse_tag(t) for t in texts})  # type: ignore[union-attr]


def parse_name_alias(text: str, default_name: str | None = None) -> tuple[str, str]:
    """``name@alias`` -> (name, alias). A bare ``alias`` takes ``default_name`` if given."""
    if not isinstance(text, str):
        raise InvalidNameError(f"alias must be a string, got {type(text).__name__}")
    if len(text) > 2 * MAX_NAME + 1:
        raise InvalidNameError(f"alias is {len(text)} characters long; at most {MAX_NAME}@{MAX_NAME}")
    name, sep, alias = text.rpartition("@")
    if not sep:
        if default_name is None:
            raise InvalidNameError(f"alias {_show(text)} must look like NAME@ALIAS")
        name = default_name
    return validate_name(name, "alias name"), validate_name(alias, "alias")


def validate_digest(digest: str) -> str:
    """A sha256 as 64 lower-case hex characters."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidNameError(f"digest {_show(str(digest))} is not 64 lower-case hex characters")
    return digest


def normalize_id_ref(ref: str) -> str:
    """An id or id prefix in canonical (lower-case) form; NotFoundError when it cannot be one."""
    text = ref.strip().lower()
    if len(text) < MIN_PREFIX or len(text) > ID_LENGTH or not _ID_RE.match(text):
        raise NotFoundError(
            f"no adapter {_show(ref)}: a REF is an adapter id, a unique id prefix of at least "
            f"{MIN_PREFIX} characters, or NAME@ALIAS"
        )
    return text
