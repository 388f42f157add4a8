"""The HTTP API and Prometheus metrics of issue 13 (docs/observability.md).

A `[[listeners]]` table with transport `http` or `https` turns it on; then
`service.HttpService` serves `app.build_app(...)` on the broker's own event
loop. Only then are aiohttp and prometheus_client imported: a broker without
an HTTP listener does not load them (`midge apikey` needs `apikeys.py` only,
which uses the standard library).
"""
