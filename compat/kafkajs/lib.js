// compat/kafkajs/lib.js — what the kafkajs checks run by compat/run.sh (group.js, txn.js) share:
// their arguments, ok:/FAIL: assertions, bounded waits and the exit status.
'use strict'

const WAIT_MS = 30000

// --broker host:port [--records N] [--run-id ID]
function parseArgs(argv) {
  const args = { broker: null, records: 1000, runId: String(Math.floor(Date.now() / 1000)) }
  for (let i = 2; i < argv.length; i++) {
    const v = argv[i + 1]
    switch (argv[i]) {
      case '--broker': args.broker = v; i++; break
      case '--records': args.records = parseInt(v, 10); i++; break
      case '--run-id': args.runId = v; i++; break
      default: throw new Error(`unknown argument ${argv[i]}`)
    }
  }
  if (!args.broker) throw new Error('--broker host:port is required')
  return args
}

const failures = []
function expect(cond, msg) {
  console.log((cond ? 'ok:   ' : 'FAIL: ') + msg)
  if (!cond) failures.push(msg)
  return cond
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Polls cond until it holds or timeoutMs pass; returns its last value.
async function waitFor(cond, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (cond()) return true
    await sleep(100)
  }
  return cond()
}

const range = (lo, hi) => Array.from({ length: hi - lo }, (_, k) => lo + k)
const sorted = (xs) => [...xs].sort((x, y) => x - y)
const same = (xs, ys) => xs.length === ys.length && xs.every((x, k) => x === ys[k])

// connect: a kafkajs client of the broker and a connected admin that has created the topic with
// the given partitions (the creation asserted). Returns { kafka, admin }.
async function connect(args, clientId, topic, partitions) {
  const { Kafka, logLevel } = require('kafkajs')
  const kafka = new Kafka({
    clientId,
    brokers: [args.broker],
    logLevel: logLevel.WARN,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5 },
  })
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
  })
  expect(created, `createTopics ${topic} with ${partitions} partitions`)
  return { kafka, admin }
}

// Runs main under a watchdog and exits 0 only when no assertion failed.
function run(name, main, limitMs = 180000) {
  const watchdog = setTimeout(() => {
    console.log(`FAIL: ${name} did not finish within ${limitMs / 1000}s`)
    process.exit(1)
  }, limitMs)
  main()
    .catch((e) => {
      expect(false, `unexpected error: ${e && e.stack ? e.stack : e}`)
    })
    .finally(() => {
      clearTimeout(watchdog)
      if (failures.length) console.log(`${failures.length} assertion(s) failed`)
      process.exit(failures.length ? 1 : 0)
    })
}

module.exports = { WAIT_MS, parseArgs, expect, sleep, waitFor, range, sorted, same, connect, run }
