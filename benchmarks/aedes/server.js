// One Aedes node of a cluster on Redis, for `midge bench --cluster N --against aedes`.
//
//     node server.js --port PORT --redis redis://HOST:PORT/DB [--host 127.0.0.1] [--id NAME]
//
// Built as Aedes's README recommends for clusters: mqemitter-redis carries
// messages between nodes (Redis pub/sub) and aedes-persistence-redis keeps
// subscriptions, sessions, QoS 1/2 state and retained messages in Redis.
// Every other option is Aedes's default. Once it listens it prints one line,
// `aedes NAME ready on HOST:PORT` (the real port, also with --port 0), which
// the bench waits for. Install the modules with `npm install --prefix benchmarks/aedes`.

import { createServer } from 'node:net'
import { parseArgs } from 'node:util'
import { Aedes } from 'aedes'
import mqemitterRedis from 'mqemitter-redis'
import persistenceRedis from 'aedes-persistence-redis'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '1883' },
    host: { type: 'string', default: '127.0.0.1' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379/0' },
    id: { type: 'string' }
  }
})

// ioredis options from a redis:// URL: aedes-persistence-redis takes only options.
function redisOptions (text) {
  const url = new URL(text)
  const options = {
    host: url.hostname || '127.0.0.1',
    port: Number(url.port || 6379),
    db: Number(url.pathname.slice(1) || 0)
  }
  if (url.password) options.password = decodeURIComponent(url.password)
  if (url.username) options.username = decodeURIComponent(url.username)
  return options
}

async function main () {
  const redis = redisOptions(values.redis)
  const aedes = await Aedes.createBroker({
    id: values.id,
    mq: mqemitterRedis(redis),
    persistence: persistenceRedis(redis),
    // The bench's client ids are longer than MQTT 3.1's 23 characters.
    maxClientsIdLength: 256
  })
  aedes.on('connectionError', (client, err) => {
    console.error('connection error', client && client.id, err.message)
  })
  const server = createServer(aedes.handle)
  server.on('error', (err) => {
    console.error('server error', err)
    process.exit(1)
  })
  server.listen(Number(values.port), values.host, () => {
    const address = server.address()
    console.log(`aedes ${aedes.id} ready on ${address.address}:${address.port}`)
  })
  // SIGTERM from the bench: close the listener and the Redis connections, then go.
  process.on('SIGTERM', () => {
    server.close()
    aedes.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
