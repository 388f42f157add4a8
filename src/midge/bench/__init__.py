"""`midge bench`: a load generator and benchmark scenarios that run against any MQTT broker.

- `wire`: raw-socket MQTT clients: pre-encoded packets, fixed-header counting.
- `loadgen`: the parent (`Swarm`) of the worker processes, which live in
  `specs` (what parent and workers share), `publishing` (publishers, pairs),
  `counting` (subscribers) and `connections` (connection openers, and the
  sink that shows the generator's own ceiling).
- `scenarios`: the scenarios, each bounded in time and counting lost
  messages, and their registry; `flows` has what they are made of (params,
  target, outcome, the flows that drive the workers), `scale` the
  connections, wildcard and retained scenarios, `overload` the QoS 1/2
  overload scenarios (acknowledged, then lost?).
- `brokers`: start Midge, Mosquitto (and amqtt when installed) as subprocesses.
- `cluster`: clusters instead (`--cluster N`): Midge nodes, or Aedes nodes
  (benchmarks/aedes/server.js), on a fresh redis-server (`redisserver`),
  publishers on node 1 and subscribers on node N.
- `runner`: every scenario against every broker, alternating, several rounds;
  the table, the JSON file and the ratio chart (`chart`); `lineup` says how
  it starts each broker (one process, or a cluster).
- `cli`: the `midge bench` command line.
"""
