"""The web dashboard served at `/` by the HTTP listener (docs/observability.md)."""

from midge.http.dashboard.dashboard import add_dashboard_routes

__all__ = ["add_dashboard_routes"]
