"""Command-line tools: `midge pub` / `midge sub` (on the client library) and more."""
