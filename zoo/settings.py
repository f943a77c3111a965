"""Resolved settings of the zoo: where the catalog, the object store and Ray live.

Resolution order, per field: command-line flag > environment (``ZOO_HOME``,
``ZOO_CATALOG_URL``, ``ZOO_STORE_URL``, ``RAY_ADDRESS``) > config file in ``ZOO_HOME``
(``config.toml``, else ``config.yaml``/``config.yml``; keys ``catalog_url``, ``store_url``,
``ray_address``) > defaults. ``ZOO_HOME`` itself comes from a flag or the environment only
(the config file lives inside it). Torch-free and cheap: every CLI verb resolves it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from zoo.errors import ConfigError
from zoo.untrusted import UntrustedInputError, clip, load_yaml

CONFIG_KEYS = ("catalog_url", "store_url", "ray_address")
ENV_VARS = {"catalog_url": "ZOO_CATALOG_URL", "store_url": "ZOO_STORE_URL",
            "ray_address": "RAY_ADDRESS"}
MAX_CONFIG_FILE_BYTES = 64 * 1024
_SECRET_KEY = re.compile(r"(pass|secret|token|key|credential|signature)", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Where things are. ``sources`` says where each value came from (flag/env/file/default)."""

    home: str
    catalog_url: str
    store_url: str
    ray_address: str | None = None
    config_file: str | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def redacted(self) -> dict[str, Any]:
        """A printable view: passwords in URLs and secret-looking query values become ***."""
        return {
            "home": self.home,
            "catalog_url": redact_url(self.catalog_url),
            "store_url": redact_url(self.store_url),
            "ray_address": redact_url(self.ray_address) if self.ray_address else None,
            "config_file": self.config_file,
            "sources": dict(self.sources),
        }


def redact_url(url: str) -> str:
    """Hide the password of ``scheme://user:pw@host`` and secret-looking query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc, changed = parts.netloc, False
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo, changed = userinfo.split(":", 1)[0] + ":***", True
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEY.search(k) for k, _ in pairs):
            changed = True
            query = urlencode([(k, "***" if _SECRET_KEY.search(k) else v) for k, v in pairs],
                              safe="*")
    if not changed:  # keep the text as typed (urlunsplit would turn sqlite:/// into sqlite://)
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def strip_credentials(url: str) -> str:
    """The URL without its password and without secret-looking query parameters
    (``password``, ``sslpassword``, ``token``…): what may travel to another machine, which reads
    the secrets from its own environment (``PGPASSWORD``, ``~/.pgpass``, its own
    ``ZOO_CATALOG_URL``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, v) for k, v in pairs if not _SECRET_KEY.search(k)])
    if netloc == parts.netloc and len(query) == len(parts.query) and query == parts.query:
        return url  # nothing secret: keep the text as typed (sqlite:/// stays sqlite:///)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def same_target(a: str, b: str) -> bool:
    """Whether two URLs name the same database or server once credentials are ignored."""
    return strip_credentials(a) == strip_credentials(b)


def with_local_credentials(forwarded: str, key: str) -> str:
    """A URL forwarded without credentials, completed from THIS machine's own setting
    (``ZOO_CATALOG_URL``/``ZOO_STORE_URL`` in its environment or config file) when that names
    the same target; otherwise the forwarded URL as it is (libpq then reads ``PGPASSWORD`` or
    ``~/.pgpass``, boto3 its credential chain)."""
    try:
        local = getattr(resolve_settings(), key)
    except ConfigError:
        return forwarded
    return local if local and same_target(local, forwarded) else forwarded


_FORWARDED_ENDPOINT = "ZOO_FORWARDED_AWS_ENDPOINT_URL"


def endpoint_env() -> dict[str, str]:
    """What a Ray process needs to reach the same S3 endpoint as this one (no credentials):
    workers started before this process set ``AWS_ENDPOINT_URL`` would otherwise go to AWS."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return {_FORWARDED_ENDPOINT: endpoint} if endpoint else {}


def adopt_forwarded_endpoint() -> None:
    """In a Ray process: use the submitter's S3 endpoint unless this machine names its own."""
    forwarded = os.environ.get(_FORWARDED_ENDPOINT)
    if forwarded and not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ["AWS_ENDPOINT_URL"] = forwarded


def _read_config_file(home: Path) -> tuple[dict[str, Any], str | None]:
    """The config file's values, bounded like any text a user hands the zoo
    (``zoo.untrusted``): size cap, no YAML aliases, errors of one short line."""
    for name in ("config.toml", "config.yaml", "config.yml"):
        path = home / name
        if path.is_file():
            return _check_file_keys(_parse_config(path), path), str(path)
    return {}, None


def _parse_config(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if len(text) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"config file {path} is {len(text)} bytes; at most "
                          f"{MAX_CONFIG_FILE_BYTES}")
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {clip(str(exc))}") from None
    import yaml

    try:
        return load_yaml(text, loader=yaml.SafeLoader, max_bytes=MAX_CONFIG_FILE_BYTES) or {}
    except UntrustedInputError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _check_file_keys(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of {', '.join(CONFIG_KEYS)}")
    unknown = sorted(map(str, set(data) - set(CONFIG_KEYS)))
    if unknown:
        raise ConfigError(clip(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                               f"allowed: {', '.join(CONFIG_KEYS)}"))
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string, got "
                              f"{clip(repr(value), 80)}")
    return data


def _normalize_store_url(value: str) -> str:
    """A bare directory path becomes an absolute ``file://`` URL; URLs pass through."""
    if "://" in value:
        return value
    return "file://" + str(Path(value).expanduser().resolve())


def resolve_settings(
    *,
    home: str | None = None,
    catalog_url: str | None = None,
    store_url: str | None = None,
    ray_address: str | None = None,
) -> Settings:
    """Resolve every setting: flag > environment > config file > default."""
    sources: dict[str, str] = {}
    if home:
        sources["home"] = "flag"
    elif os.environ.get("ZOO_HOME"):
        home, sources["home"] = os.environ["ZOO_HOME"], "env"
    else:
        home, sources["home"] = "~/.zoo", "default"
    home_path = Path(home).expanduser().resolve()
    file_values, config_file = _read_config_file(home_path)

    flags = {"catalog_url": catalog_url, "store_url": store_url, "ray_address": ray_address}
    defaults = {
        "catalog_url": f"sqlite:///{home_path / 'catalog.db'}",
        "store_url": f"file://{home_path / 'store'}",
        "ray_address": None,
    }
    values: dict[str, str | None] = {}
    for key in CONFIG_KEYS:
        for source, candidate in (("flag", flags[key]), ("env", os.environ.get(ENV_VARS[key])),
                                  ("file", file_values.get(key)), ("default", defaults[key])):
            if candidate:
                values[key], sources[key] = candidate, source
                break
        else:
            values[key], sources[key] = None, "default"
    return Settings(
        home=str(home_path),
        catalog_url=str(values["catalog_url"]),
        store_url=_normalize_store_url(str(values["store_url"])),
        ray_address=values["ray_address"],
        config_file=config_file,
        sources=sources,
    )
