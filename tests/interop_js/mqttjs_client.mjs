#!/usr/bin/env node
// MQTT.js (the npm `mqtt` package, as browsers use it) driven from the command
// line for tests/integration/test_mqttjs.py. MQTT 3.1.1 (protocolVersion 4),
// clean session, no automatic reconnect.
//
// Every event is one JSON line on stdout, so the Python test can assert exactly:
//   {"event":"connack","returnCode":0,"sessionPresent":false}
//   {"event":"suback","granted":[{"topic":"a/#","qos":1}]}
//   {"event":"ready"}                       subscriptions done; publish now
//   {"event":"message","topic":..,"payload_b64":..,"length":..,"qos":..,"retain":..,"dup":..}
//   {"event":"published","topic":..,"qos":..,"retain":..}   (QoS 1: PUBACK, QoS 2: PUBCOMP)
//   {"event":"done"}                        clean DISCONNECT sent
// On an error or the overall timeout: {"event":"error","message":..} on stdout,
// the message on stderr, exit code 1 (error) or 2 (timeout).
//
// Modes: sub (subscribe, wait for --expect messages), pub (publish each
// --payload to --publish in order), pubsub (subscribe first, then publish,
// then wait for --expect messages). After the expected messages it waits
// --linger ms more and reports anything else that arrives (duplicates).
//
// Example:
//   node mqttjs_client.mjs --url ws://127.0.0.1:8080/mqtt --mode sub \
//     --subscribe 'a/#' --sub-qos 1 --expect 3 --linger 200
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import mqtt from 'mqtt'

const USAGE = `usage: node mqttjs_client.mjs --url URL --mode sub|pub|pubsub
  [--subscribe FILTER]... [--sub-qos 0|1|2] [--expect N] [--linger MS]
  [--publish TOPIC] [--payload TEXT]... [--payload-encoding utf8|hex|base64]
  [--qos 0|1|2] [--retain] [--ca FILE] [--client-id ID] [--timeout MS]
Environment: MQTTJS_URL, MQTTJS_CA and MQTTJS_TIMEOUT_MS stand in for --url, --ca, --timeout.`

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

function fail(message, code = 1) {
  emit({ event: 'error', message })
  process.stderr.write(`mqttjs_client: ${message}\n`)
  process.exit(code)
}

function integer(name, text, min, max) {
  const value = Number(text)
  if (!Number.isInteger(value) || value < min || value > max) {
    fail(`--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}\n${USAGE}`)
  }
  return value
}

let parsed
try {
  parsed = parseArgs({
    options: {
      url: { type: 'string', default: process.env.MQTTJS_URL },
      mode: { type: 'string' },
      subscribe: { type: 'string', multiple: true, default: [] },
      'sub-qos': { type: 'string', default: '0' },
      expect: { type: 'string', default: '0' },
      linger: { type: 'string', default: '0' },
      publish: { type: 'string' },
      payload: { type: 'string', multiple: true, default: [] },
      'payload-encoding': { type: 'string', default: 'utf8' },
      qos: { type: 'string', default: '0' },
      retain: { type: 'boolean', default: false },
      ca: { type: 'string', default: process.env.MQTTJS_CA },
      'client-id': { type: 'string' },
      timeout: { type: 'string', default: process.env.MQTTJS_TIMEOUT_MS ?? '10000' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values
} catch (error) {
  fail(`${error.message}\n${USAGE}`)
}
if (parsed.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}

const args = {
  url: parsed.url,
  mode: parsed.mode,
  filters: parsed.subscribe,
  subQos: integer('sub-qos', parsed['sub-qos'], 0, 2),
  expect: integer('expect', parsed.expect, 0, 1_000_000),
  linger: integer('linger', parsed.linger, 0, 600_000),
  topic: parsed.publish,
  payloads: parsed.payload,
  encoding: parsed['payload-encoding'],
  qos: integer('qos', parsed.qos, 0, 2),
  retain: parsed.retain,
  ca: parsed.ca,
  clientId: parsed['client-id'] ?? `mqttjs-${process.pid}`,
  timeout: integer('timeout', parsed.timeout, 1, 600_000),
}
if (!args.url) fail(`--url (or MQTTJS_URL) is required\n${USAGE}`)
if (!['sub', 'pub', 'pubsub'].includes(args.mode)) fail(`--mode must be sub, pub or pubsub\n${USAGE}`)
const subscribing = args.mode !== 'pub'
const publishing = args.mode !== 'sub'
if (subscribing && args.filters.length === 0) fail(`--mode ${args.mode} needs --subscribe FILTER`)
if (publishing && (!args.topic || args.payloads.length === 0)) {
  fail(`--mode ${args.mode} needs --publish TOPIC and at least one --payload`)
}
if (!['utf8', 'hex', 'base64'].includes(args.encoding)) {
  fail('--payload-encoding must be utf8, hex or base64')
}

// The hard limit: whatever happens, the process ends within --timeout ms.
const deadline = setTimeout(() => {
  fail(`timeout after ${args.timeout} ms (received ${received} of ${args.expect} messages)`, 2)
}, args.timeout)

const options = {
  protocolVersion: 4,
  clientId: args.clientId,
  clean: true,
  keepalive: 30,
  reconnectPeriod: 0, // a broken connection is an error here, not something to hide
  connectTimeout: Math.min(args.timeout, 10_000),
  resubscribe: false,
}
if (args.ca) {
  try {
    options.ca = readFileSync(args.ca)
  } catch (error) {
    fail(`cannot read --ca ${args.ca}: ${error.message}`)
  }
  options.rejectUnauthorized = true
}

let received = 0
let finishing = false
let lingerTimer = null

const client = mqtt.connect(args.url, options)

function finish() {
  if (finishing) return
  finishing = true
  client.end(false, {}, () => {
    emit({ event: 'done' })
    clearTimeout(deadline)
    process.exit(0)
  })
}

function maybeFinish() {
  if (!publishedAll || received < args.expect || lingerTimer !== null) return
  lingerTimer = setTimeout(finish, args.linger)
}

let publishedAll = !publishing

client.on('error', (error) => fail(`MQTT.js error: ${error.message}`))
client.on('close', () => {
  if (!finishing) fail('connection closed by the broker')
})
client.on('offline', () => {
  if (!finishing) fail('client went offline')
})

client.on('message', (topic, payload, packet) => {
  received += 1
  emit({
    event: 'message',
    topic,
    payload_b64: Buffer.from(payload).toString('base64'),
    length: payload.length,
    qos: packet.qos,
    retain: packet.retain,
    dup: packet.dup,
  })
  maybeFinish()
})

function subscribe() {
  return new Promise((resolve) => {
    client.subscribe(args.filters, { qos: args.subQos }, (error, granted) => {
      if (error) fail(`SUBSCRIBE failed: ${error.message}`)
      emit({ event: 'suback', granted: granted.map(({ topic, qos }) => ({ topic, qos })) })
      resolve()
    })
  })
}

function publishOne(payload) {
  return new Promise((resolve) => {
    client.publish(args.topic, payload, { qos: args.qos, retain: args.retain }, (error) => {
      if (error) fail(`PUBLISH failed: ${error.message}`)
      emit({ event: 'published', topic: args.topic, qos: args.qos, retain: args.retain })
      resolve()
    })
  })
}

client.on('connect', async (connack) => {
  emit({ event: 'connack', returnCode: connack.returnCode, sessionPresent: connack.sessionPresent })
  if (subscribing) await subscribe()
  emit({ event: 'ready' })
  if (publishing) {
    for (const text of args.payloads) await publishOne(Buffer.from(text, args.encoding))
    publishedAll = true
  }
  maybeFinish()
})
