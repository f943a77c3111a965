"""Connecting to Ray: a local Ray started in-process (embedded), or an existing cluster.

Ray 2.60 uses token authentication: a local ``ray.init()`` generates a token (saved to
``~/.ray/auth_token``) and enables it; a client of an existing cluster must present the
cluster's token. :func:`prepare_token_auth` turns token mode on for this process when a token
is available (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) and
``RAY_AUTH_MODE`` is unset, so the job submission client authenticates without ceremony.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

_STARTED_HERE = {"value": False}


def token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def prepare_token_auth() -> bool:
    """Set ``RAY_AUTH_MODE=token`` when unset and a token exists; True when token mode is on."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return (mode or "").lower() == "token"


def connect(address: str | None = None, *, num_cpus: int | None = None,
            num_gpus: int | None = None) -> bool:
    """Ensure ``ray`` is initialised; returns True when this call started a local Ray.

    ``address`` None starts (or reuses) a local Ray in this process. Inside a Ray job's driver
    use ``address="auto"``.
    """
    # Ray reads RAY_AUTH_MODE when it is first imported: decide before that. Token auth is
    # what a local Ray does by default; saying so keeps its banner off the screen.
    if address:
        prepare_token_auth()
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
        return False
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **kwargs)
    _STARTED_HERE["value"] = True
    return True


def shutdown_if_started() -> None:
    """Stop the local Ray if :func:`connect` started it (embedded mode)."""
    import ray

    if _STARTED_HERE["value"] and ray.is_initialized():
        ray.shutdown()
        _STARTED_HERE["value"] = False


def job_client(address: str) -> Any:
    """A ``JobSubmissionClient`` for ``address`` (the dashboard URL, e.g. http://head:8265)."""
    prepare_token_auth()
    from ray.job_submission import JobSubmissionClient

    url = address if "://" in address else f"http://{address}"
    try:
        return JobSubmissionClient(url)
    except Exception as exc:  # noqa: BLE001 - connection/auth problems become one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "401" in text or "auth" in text.lower() or "token" in text.lower():
            hint = (" (token authentication: set RAY_AUTH_TOKEN, or put the cluster's token in"
                    " ~/.ray/auth_token, and RAY_AUTH_MODE=token)")
        from zoo.settings import redact_url
        from zoo.untrusted import clip

        shown = redact_url(url)
        raise ConfigError(f"cannot reach the Ray job server at {shown}: "
                          f"{clip(text.replace(url, shown))}{hint}") from None


__all__ = ["connect", "job_client", "prepare_token_auth", "shutdown_if_started",
           "token_available"]
