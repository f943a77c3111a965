"""The team server (``zoo server``): REST API, token auth and audit over the storage layer.

Imports storage and workers, never the CLI. ``create_app`` in :mod:`zoo.server.app` builds it.
"""
