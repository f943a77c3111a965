"""Fixtures of the server tests, defined in server_fixtures.py (a module name that cannot clash
with another area's conftest when the helpers are imported)."""

from server_fixtures import (  # noqa: F401 - fixtures are found by name
    backend,
    module_sqlite_backend,
    s3_env,
    served,
    served_sqlite,
    sqlite_backend,
)
