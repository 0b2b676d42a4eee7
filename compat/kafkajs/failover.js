#!/usr/bin/env node
// compat/kafkajs/failover.js — a kafkajs producer through a leader change (compat/cluster.sh).
//
//   node failover.js --brokers h:p,h:p,h:p --topic T --partitions P --records N --rate R --out FILE
//
// An idempotent producer (acks -1) sends the values 000000..N-1 (value i to partition i % P) to
// the existing topic T at about R a second, one producer.send() at a time, each with the values
// due by then for one partition, and appends "i partition offset" to FILE for each value once
// its send resolves.
//
// One partition per send() works around a kafkajs bug (2.2.4, its latest release; see
// tulios/kafkajs#1303, open): send() keeps, across its retries, the responses of the brokers
// that answered the first attempt, keyed by broker, and on a retry skips every broker in that
// map. When the killed leader's partition moves to a broker that had already answered for
// another partition of the same send(), that partition's messages are never sent again and
// send() resolves without them: lost, with no error. A send() spanning partitions led by
// different brokers shows it (this script checks that every partition of a send() comes back
// with an offset, so it fails instead of losing values silently); a send() for one partition
// has only one broker to ask.
// compat/cluster.sh kill -9s the leader of partition 0 once a third are in. The application
// never sends a value twice: a send that rejects fails the check, and the rest are not sent.
// The errors kafkajs logged while it retried (what it made of the leader change) are counted
// and printed. Exit status 0 only when all N values were delivered.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1' // every message names its partition
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

function parseArgs(argv) {
  const args = {}
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '')
    if (!['brokers', 'topic', 'partitions', 'records', 'rate', 'out'].includes(k)) throw new Error(`unknown argument ${argv[i]}`)
    args[k] = argv[i + 1]
  }
  for (const k of ['brokers', 'topic', 'partitions', 'records', 'rate', 'out']) {
    if (args[k] === undefined) throw new Error(`--${k} is required`)
  }
  args.partitions = parseInt(args.partitions, 10)
  args.records = parseInt(args.records, 10)
  args.rate = parseFloat(args.rate)
  return args
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pad = (i) => String(i).padStart(6, '0')

async function main() {
  const args = parseArgs(process.argv)
  const out = fs.openSync(args.out, 'w')

  // What kafkajs logs at warn and error while it retries: "Failed to send messages: This server
  // is not the leader for that topic-partition", "Connection error: connect ECONNREFUSED", ...
  const logged = new Map()
  const logCreator = () => ({ namespace, level, log }) => {
    if (level > logLevel.WARN) return
    const msg = `${namespace}: ${log.message}${log.error && log.error !== log.message ? ' (' + log.error + ')' : ''}`
    logged.set(msg, (logged.get(msg) || 0) + 1)
  }

  const kafka = new Kafka({
    clientId: 'ringtail-compat-failover',
    brokers: args.brokers.split(','),
    logLevel: logLevel.WARN,
    logCreator,
  })
  // idempotent: acks must be -1. kafkajs documents unlimited retries as the idempotent
  // producer's default, but Kafka.producer() always passes a retry object, so 2.2.4 keeps its
  // general default of 5 retries (300 ms doubling: ~9 s in all), and a send() to a killed leader
  // that the cluster fences after 9 s gives up with KafkaJSNumberOfRetriesExceeded
  // (ECONNREFUSED). So, as a user of the idempotent producer would: unlimited retries, each after
  // a metadata refresh, with the back-off capped at 2 s (instead of 30 s) so a send notices the
  // new leader soon after it is elected. maxInFlightRequests 1, as kafkajs' documentation asks of
  // an idempotent producer, keeps a retried request ahead of the next one.
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 2000 },
  })
  await producer.connect()

  const t0 = Date.now()
  let next = 0
  let delivered = 0
  let failure = null
  let sends = 0
  let slowest = 0
  while (next < args.records) {
    const due = Math.min(args.records, Math.floor(((Date.now() - t0) / 1000) * args.rate) + 1)
    if (due <= next) {
      await sleep(Math.max(1, t0 + (next / args.rate) * 1000 - Date.now()))
      continue
    }
    for (let p = 0; p < args.partitions && !failure; p++) {
      const idx = []
      for (let i = next; i < due; i++) if (i % args.partitions === p) idx.push(i)
      if (idx.length === 0) continue
      const started = Date.now()
      let meta
      try {
        meta = await producer.send({
          topic: args.topic,
          acks: -1,
          messages: idx.map((i) => ({ key: `k${pad(i)}`, value: pad(i), partition: p })),
        })
      } catch (e) {
        failure = `send of ${idx.length} values to partition ${p} (${pad(idx[0])}..) rejected: ${e.name}: ${e.message}${e.cause ? ' (cause: ' + e.cause + ')' : ''}`
        break
      }
      sends++
      slowest = Math.max(slowest, Date.now() - started)
      // The send's values got baseOffset, baseOffset+1, ... in its partition.
      const m = meta.find((x) => x.partition === p)
      if (!m || meta.length !== 1) {
        failure = `send to partition ${p} resolved without exactly its offset: ${JSON.stringify(meta)}`
        break
      }
      let offset = BigInt(m.baseOffset)
      fs.writeSync(out, idx.map((i) => `${i} ${p} ${offset++}\n`).join(''))
      delivered += idx.length
    }
    if (failure) break
    next = due
  }
  fs.closeSync(out)
  await producer.disconnect()

  console.log(`      ${sends} sends in ${((Date.now() - t0) / 1000).toFixed(1)}s (the slowest took ${(slowest / 1000).toFixed(1)}s): ${delivered} of ${args.records} values delivered`)
  for (const [msg, n] of logged) console.log(`      kafkajs logged ${n}x: ${msg}`)
  if (failure) {
    console.log(`FAIL: ${failure}`)
    return false
  }
  console.log(`ok:   all ${args.records} values delivered with no send rejected; the leader change was retried inside kafkajs`)
  return true
}

const watchdog = setTimeout(() => {
  console.log('FAIL: failover.js did not finish within 150s')
  process.exit(1)
}, 150000)

main()
  .then((ok) => {
    clearTimeout(watchdog)
    process.exit(ok ? 0 : 1)
  })
  .catch((e) => {
    console.log(`FAIL: unexpected error: ${e && e.stack ? e.stack : e}`)
    process.exit(1)
  })
