#!/usr/bin/env node
// MQTT.js (the npm `mqtt` package, as browsers use it) driven from the command
// line for tests/integration/test_mqttjs*.py. MQTT 3.1.1 (--protocol-version 4,
// the default) or MQTT 5.0 (--protocol-version 5); no automatic reconnect.
//
// Every event is one JSON line on stdout, so the Python test can assert exactly:
//   {"event":"connack","returnCode":0,"sessionPresent":false}
//   {"event":"suback","granted":[{"topic":"a/#","qos":1}]}
//   {"event":"ready"}                       subscriptions done; publish now
//   {"event":"message","topic":..,"payload_b64":..,"length":..,"qos":..,"retain":..,"dup":..}
//   {"event":"published","topic":..,"qos":..,"retain":..}   (QoS 1: PUBACK, QoS 2: PUBCOMP)
//   {"event":"done"}                        clean DISCONNECT sent
// With --protocol-version 5 the events carry more:
//   connack    "reasonCode" instead of "returnCode", and "properties" (the CONNACK's)
//   suback     "reasonCodes" (one per filter) and "properties"; one suback per
//              SUBSCRIBE packet, and a refused filter (code >= 0x80) is reported,
//              not an error
//   message    "properties": what MQTT.js parsed (see below)
//   published  "reasonCode" (PUBACK, or PUBREC for QoS 2), "pubcompReasonCode"
//              (QoS 2), "topicAlias" / "topicSent" (what went on the wire);
//              a refusal (code >= 0x80) is reported, not an error
//   disconnect a DISCONNECT from the server: "reasonCode", "properties"
// Properties are printed with MQTT.js's names. Binary ones (correlationData,
// authenticationData) are base64 text; subscriptionIdentifier is always a list;
// userProperties is a list of [name, value] pairs. MQTT.js parses User
// Properties into an object (name -> value, or name -> [values] when a name
// repeats), so the wire order is only partly observable: names appear in the
// order they first arrived (integer-like names such as "1" first, ascending:
// JavaScript object key order), and all values of one name are together.
// [["b","2"],["a","1"],["b","3"]] on the wire is printed [["b","2"],["b","3"],["a","1"]].
// The same holds for --user-property when sending: MQTT.js writes the object,
// so repeated names are sent together, at the place of their first use.
//
// On an error or the overall timeout: {"event":"error","message":..} on stdout,
// the message on stderr, exit code 1 (error) or 2 (timeout).
//
// Modes: sub (subscribe, wait for --expect messages), pub (publish each
// --payload to --publish in order), pubsub (subscribe first, then publish,
// then wait for --expect messages), listen (no SUBSCRIBE: a resumed session's
// messages, with --no-clean). After the expected messages it waits --linger ms
// more and reports anything else that arrives (duplicates).
//
// Example:
//   node mqttjs_client.mjs --url ws://127.0.0.1:8080/mqtt --mode sub \
//     --subscribe 'a/#' --sub-qos 1 --expect 3 --linger 200
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import mqtt from 'mqtt'

const USAGE = `usage: node mqttjs_client.mjs --url URL --mode sub|pub|pubsub|listen
  [--subscribe FILTER]... [--sub-qos 0|1|2] [--expect N] [--linger MS]
  [--publish TOPIC] [--payload TEXT]... [--payload-encoding utf8|hex|base64]
  [--qos 0|1|2] [--retain] [--ca FILE] [--client-id ID] [--timeout MS]
  [--protocol-version 4|5] [--no-clean]
MQTT 5.0 only (--protocol-version 5):
  connect:   [--session-expiry SECONDS] [--topic-alias-maximum N] [--maximum-packet-size BYTES]
  subscribe: [--subscription-id N]... (one: on the SUBSCRIBE; one per --subscribe:
             each filter in its own SUBSCRIBE) [--no-local] [--retain-as-published]
             [--retain-handling 0|1|2]
  publish:   [--user-property NAME=VALUE]... [--response-topic TOPIC]
             [--correlation-data TEXT] [--content-type TYPE] [--message-expiry SECONDS]
             [--payload-format-indicator 0|1] [--auto-topic-alias]
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

function optionalInteger(name, text, min, max) {
  return text === undefined ? undefined : integer(name, text, min, max)
}

// The options only MQTT 5.0 has; given with --protocol-version 4 they are an error.
const V5_OPTIONS = [
  'session-expiry', 'topic-alias-maximum', 'maximum-packet-size', 'subscription-id', 'no-local',
  'retain-as-published', 'retain-handling', 'user-property', 'response-topic',
  'correlation-data', 'content-type', 'message-expiry', 'payload-format-indicator',
  'auto-topic-alias',
]

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
      'protocol-version': { type: 'string', default: '4' },
      'no-clean': { type: 'boolean', default: false },
      'session-expiry': { type: 'string' },
      'topic-alias-maximum': { type: 'string' },
      'maximum-packet-size': { type: 'string' },
      'subscription-id': { type: 'string', multiple: true },
      'no-local': { type: 'boolean' },
      'retain-as-published': { type: 'boolean' },
      'retain-handling': { type: 'string' },
      'user-property': { type: 'string', multiple: true },
      'response-topic': { type: 'string' },
      'correlation-data': { type: 'string' },
      'content-type': { type: 'string' },
      'message-expiry': { type: 'string' },
      'payload-format-indicator': { type: 'string' },
      'auto-topic-alias': { type: 'boolean' },
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

const version = Number(parsed['protocol-version'])
if (version !== 4 && version !== 5) fail(`--protocol-version must be 4 or 5\n${USAGE}`)
const v5 = version === 5
if (!v5) {
  const given = V5_OPTIONS.filter((name) => parsed[name] !== undefined)
  if (given.length > 0) fail(`--${given[0]} needs --protocol-version 5`)
}

// --user-property NAME=VALUE, in order, into MQTT.js's object form.
function userProperties(pairs) {
  if (pairs === undefined) return undefined
  const object = {}
  for (const pair of pairs) {
    const at = pair.indexOf('=')
    if (at < 0) fail(`--user-property needs NAME=VALUE, not ${JSON.stringify(pair)}`)
    const [name, value] = [pair.slice(0, at), pair.slice(at + 1)]
    if (!Object.hasOwn(object, name)) object[name] = value
    else if (Array.isArray(object[name])) object[name].push(value)
    else object[name] = [object[name], value]
  }
  return object
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
  clean: !parsed['no-clean'],
  sessionExpiry: optionalInteger('session-expiry', parsed['session-expiry'], 0, 0xffffffff),
  topicAliasMaximum: optionalInteger('topic-alias-maximum', parsed['topic-alias-maximum'], 0, 0xffff),
  maximumPacketSize: optionalInteger('maximum-packet-size', parsed['maximum-packet-size'], 1, 268_435_460),
  subscriptionIds: (parsed['subscription-id'] ?? []).map((id) => integer('subscription-id', id, 1, 268_435_455)),
  retainHandling: optionalInteger('retain-handling', parsed['retain-handling'], 0, 2),
  userProperties: userProperties(parsed['user-property']),
  messageExpiry: optionalInteger('message-expiry', parsed['message-expiry'], 0, 0xffffffff),
  payloadFormat: optionalInteger('payload-format-indicator', parsed['payload-format-indicator'], 0, 1),
}
if (!args.url) fail(`--url (or MQTTJS_URL) is required\n${USAGE}`)
if (!['sub', 'pub', 'pubsub', 'listen'].includes(args.mode)) {
  fail(`--mode must be sub, pub, pubsub or listen\n${USAGE}`)
}
const subscribing = args.mode === 'sub' || args.mode === 'pubsub'
const publishing = args.mode === 'pub' || args.mode === 'pubsub'
if (subscribing && args.filters.length === 0) fail(`--mode ${args.mode} needs --subscribe FILTER`)
if (publishing && (!args.topic || args.payloads.length === 0)) {
  fail(`--mode ${args.mode} needs --publish TOPIC and at least one --payload`)
}
if (!['utf8', 'hex', 'base64'].includes(args.encoding)) {
  fail('--payload-encoding must be utf8, hex or base64')
}
if (args.subscriptionIds.length > 1 && args.subscriptionIds.length !== args.filters.length) {
  fail('give one --subscription-id, or one per --subscribe')
}

// The hard limit: whatever happens, the process ends within --timeout ms.
const deadline = setTimeout(() => {
  fail(`timeout after ${args.timeout} ms (received ${received} of ${args.expect} messages)`, 2)
}, args.timeout)

const options = {
  protocolVersion: version,
  clientId: args.clientId,
  clean: args.clean,
  keepalive: 30,
  reconnectPeriod: 0, // a broken connection is an error here, not something to hide
  connectTimeout: Math.min(args.timeout, 10_000),
  resubscribe: false,
}
if (v5) {
  const properties = {}
  if (args.sessionExpiry !== undefined) properties.sessionExpiryInterval = args.sessionExpiry
  if (args.topicAliasMaximum !== undefined) properties.topicAliasMaximum = args.topicAliasMaximum
  if (args.maximumPacketSize !== undefined) properties.maximumPacketSize = args.maximumPacketSize
  if (Object.keys(properties).length > 0) options.properties = properties
  if (parsed['auto-topic-alias']) options.autoAssignTopicAlias = true
}
if (args.ca) {
  try {
    options.ca = readFileSync(args.ca)
  } catch (error) {
    fail(`cannot read --ca ${args.ca}: ${error.message}`)
  }
  options.rejectUnauthorized = true
}

// MQTT.js's parsed properties as plain JSON (see the header comment).
function plain(properties) {
  const out = {}
  for (const [name, value] of Object.entries(properties ?? {})) {
    if (name === 'userProperties') {
      out[name] = Object.entries(value).flatMap(([key, values]) =>
        (Array.isArray(values) ? values : [values]).map((item) => [key, item]),
      )
    } else if (name === 'subscriptionIdentifier') {
      out[name] = Array.isArray(value) ? value : [value]
    } else if (Buffer.isBuffer(value)) {
      out[name] = value.toString('base64')
    } else {
      out[name] = value
    }
  }
  return out
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
client.on('disconnect', (packet) => {
  emit({ event: 'disconnect', reasonCode: packet.reasonCode, properties: plain(packet.properties) })
})

// The acknowledgements of our QoS 1/2 PUBLISHes by packet id, and what each PUBLISH
// looked like on the wire (MQTT.js may replace the topic by an alias).
const acks = new Map()
const sent = []
client.on('packetreceive', (packet) => {
  if (['puback', 'pubrec', 'pubcomp'].includes(packet.cmd)) {
    acks.set(`${packet.cmd}:${packet.messageId}`, packet.reasonCode ?? 0)
  }
})
client.on('packetsend', (packet) => {
  if (packet.cmd === 'publish') sent.push({ topic: packet.topic, alias: packet.properties?.topicAlias })
})

client.on('message', (topic, payload, packet) => {
  received += 1
  const event = {
    event: 'message',
    topic,
    payload_b64: Buffer.from(payload).toString('base64'),
    length: payload.length,
    qos: packet.qos,
    retain: packet.retain,
    dup: packet.dup,
  }
  if (v5) event.properties = plain(packet.properties)
  emit(event)
  maybeFinish()
})

function subscribeOnce(filters, subscriptionId) {
  const opts = { qos: args.subQos }
  if (v5) {
    if (parsed['no-local']) opts.nl = true
    if (parsed['retain-as-published']) opts.rap = true
    if (args.retainHandling !== undefined) opts.rh = args.retainHandling
    if (subscriptionId !== undefined) opts.properties = { subscriptionIdentifier: subscriptionId }
  }
  return new Promise((resolve) => {
    client.subscribe(filters, opts, (error, granted, suback) => {
      if (error && !(v5 && suback)) fail(`SUBSCRIBE failed: ${error.message}`)
      const event = { event: 'suback', granted: granted.map(({ topic, qos }) => ({ topic, qos })) }
      if (v5) {
        event.reasonCodes = suback.granted
        event.properties = plain(suback.properties)
      }
      emit(event)
      resolve()
    })
  })
}

async function subscribe() {
  if (args.subscriptionIds.length > 1) {
    for (const [index, filter] of args.filters.entries()) {
      await subscribeOnce([filter], args.subscriptionIds[index])
    }
  } else {
    await subscribeOnce(args.filters, args.subscriptionIds[0])
  }
}

function publishOptions() {
  const opts = { qos: args.qos, retain: args.retain }
  if (!v5) return opts
  const properties = {}
  if (args.userProperties) properties.userProperties = args.userProperties
  if (parsed['response-topic'] !== undefined) properties.responseTopic = parsed['response-topic']
  if (parsed['correlation-data'] !== undefined) {
    properties.correlationData = Buffer.from(parsed['correlation-data'], 'utf8')
  }
  if (parsed['content-type'] !== undefined) properties.contentType = parsed['content-type']
  if (args.messageExpiry !== undefined) properties.messageExpiryInterval = args.messageExpiry
  if (args.payloadFormat !== undefined) properties.payloadFormatIndicator = args.payloadFormat === 1
  if (Object.keys(properties).length > 0) opts.properties = properties
  return opts
}

function publishOne(payload) {
  return new Promise((resolve) => {
    const before = sent.length
    client.publish(args.topic, payload, publishOptions(), (error, packet) => {
      const refused = v5 && error && typeof error.code === 'number'
      if (error && !refused) fail(`PUBLISH failed: ${error.message}`)
      const event = { event: 'published', topic: args.topic, qos: args.qos, retain: args.retain }
      if (v5) {
        const wire = sent[before] ?? {}
        event.topicSent = wire.topic
        if (wire.alias !== undefined) event.topicAlias = wire.alias
        const id = packet?.messageId
        const ack = (cmd) => {
          const code = acks.get(`${cmd}:${id}`)
          acks.delete(`${cmd}:${id}`)
          return code
        }
        const [puback, pubrec, pubcomp] = [ack('puback'), ack('pubrec'), ack('pubcomp')]
        if (args.qos === 1) event.reasonCode = puback ?? error?.code
        if (args.qos === 2) {
          event.reasonCode = pubrec ?? error?.code
          if (pubcomp !== undefined) event.pubcompReasonCode = pubcomp
        }
      }
      emit(event)
      resolve()
    })
  })
}

client.on('connect', async (connack) => {
  if (v5) {
    emit({
      event: 'connack',
      reasonCode: connack.reasonCode,
      sessionPresent: connack.sessionPresent,
      properties: plain(connack.properties),
    })
  } else {
    emit({ event: 'connack', returnCode: connack.returnCode, sessionPresent: connack.sessionPresent })
  }
  if (subscribing) await subscribe()
  emit({ event: 'ready' })
  if (publishing) {
    for (const text of args.payloads) await publishOne(Buffer.from(text, args.encoding))
    publishedAll = true
  }
  maybeFinish()
})
