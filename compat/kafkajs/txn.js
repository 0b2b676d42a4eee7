#!/usr/bin/env node
// compat/kafkajs/txn.js — kafkajs transactions against a running Ringtail broker.
//
//   node txn.js --broker 127.0.0.1:9092 [--records 1000] [--run-id ID]
//
// Run by compat/run.sh after `npm ci` in this folder. On a fresh 3-partition topic a
// transactional producer (transactionalId, idempotent, maxInFlightRequests 1) runs three
// transactions, each writing to every partition (value i to partition i % 3):
//   1. N/2 records, committed;
//   2. N/4 records, aborted — so in every partition aborted records lie between committed ones;
//   3. N/2 records and, through sendOffsets (AddOffsetsToTxn, TxnOffsetCommit), offsets for a
//      consumer group, committed.
// Then a consumer with readUncommitted: false must see exactly the committed values, in produce
// order per partition (transaction 3 follows the aborted records in every partition, so once
// its records are in, the aborted ones have been passed); one with readUncommitted: true must see
// every value; the group's offsets (OffsetFetch) must be those sent in transaction 3; and a second
// producer with the same transactionalId must fence the first and commit.
// Prints ok:/FAIL: lines and exits 0 only when every assertion holds.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1' // every message names its partition
const { parseArgs, expect, waitFor, range, connect, run } = require('./lib')

const PARTITIONS = 3

async function main() {
  const args = parseArgs(process.argv)
  const n = args.records
  const topic = `compat-kafkajs-txn-${args.runId}`
  const transactionalId = topic
  const eosGroup = `${topic}-offsets`

  const { kafka, admin } = await connect(args, 'ringtail-compat-kafkajs-txn', topic, PARTITIONS)

  // kafkajs warns that the client's bounded retries (5, so a broken broker fails the check
  // instead of hanging it) 'may invalidate EoS guarantees': expected here.
  const newProducer = () => kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 })
  const producer = newProducer()
  await producer.connect()

  const committed = range(0, PARTITIONS).map(() => [])
  const every = range(0, PARTITIONS).map(() => [])
  const messages = (kind, lo, hi) =>
    range(lo, hi).map((i) => ({ key: `k${i}`, value: `${kind}${String(i).padStart(6, '0')}`, partition: i % PARTITIONS }))
  // sendOffsets in transaction 3: the offsets of the group, one per partition, to read back.
  const sentOffsets = range(0, PARTITIONS).map((p) => ({ partition: p, offset: String(10 + p) }))

  const plan = [
    ['transaction 1', messages('c', 0, Math.floor(n / 2)), true, false],
    ['transaction 2', messages('a', Math.floor(n / 2), Math.floor(n / 2) + Math.max(Math.floor(n / 4), PARTITIONS)), false, false],
    ['transaction 3', messages('c', n, n + Math.floor(n / 2)), true, true],
  ]
  for (const [what, msgs, commit, withOffsets] of plan) {
    let txn
    try {
      txn = await producer.transaction()
      for (let k = 0; k < msgs.length; k += 200) {
        await txn.send({ topic, messages: msgs.slice(k, k + 200) })
      }
      if (withOffsets) {
        await txn.sendOffsets({ consumerGroupId: eosGroup, topics: [{ topic, partitions: sentOffsets }] })
      }
      if (commit) await txn.commit()
      else await txn.abort()
    } catch (e) {
      expect(false, `${what}: ${e}`)
      if (txn && txn.isActive()) await txn.abort().catch(() => {})
      return
    }
    expect(true, `${what}: ${msgs.length} records${withOffsets ? ' and the offsets of group ' + eosGroup : ''}, ${commit ? 'committed' : 'aborted'}`)
    for (const m of msgs) {
      every[m.partition].push(m.value)
      if (commit) committed[m.partition].push(m.value)
    }
  }

  // A consumer in a fresh group reading from the beginning; values per partition in order.
  async function readAll(readUncommitted, want) {
    const total = want.reduce((s, xs) => s + xs.length, 0)
    const consumer = kafka.consumer({
      groupId: `${topic}-read-${readUncommitted ? 'uncommitted' : 'committed'}`,
      readUncommitted,
      sessionTimeout: 10000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 500,
    })
    const got = range(0, PARTITIONS).map(() => [])
    let crashed = null
    consumer.on(consumer.events.CRASH, (e) => { crashed = e.payload.error })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got[partition].push(message.value.toString())
      },
    })
    // Every partition's last value is from transaction 3, after the aborted ones: once each
    // partition has its last value, nothing else can come (a later record would be an error).
    const last = want.map((xs) => xs[xs.length - 1])
    await waitFor(() => got.every((xs, p) => xs.includes(last[p])))
    await consumer.disconnect()
    const label = readUncommitted ? 'readUncommitted: true' : 'readUncommitted: false'
    expect(!crashed, `${label} consumer did not crash${crashed ? ': ' + crashed : ''}`)
    for (let p = 0; p < PARTITIONS; p++) {
      if (JSON.stringify(got[p]) !== JSON.stringify(want[p])) {
        const unexpected = got[p].filter((v) => !want[p].includes(v))
        const missing = want[p].filter((v) => !got[p].includes(v))
        console.log(`      partition ${p}: read ${got[p].length}, want ${want[p].length}; unexpected ${unexpected.slice(0, 3)}; missing ${missing.slice(0, 3)}`)
      }
    }
    expect(JSON.stringify(got) === JSON.stringify(want), `${label} consumer read exactly the ${total} expected values, in produce order per partition (read ${got.reduce((s, xs) => s + xs.length, 0)})`)
  }
  await readAll(false, committed)
  await readAll(true, every)

  try {
    const offs = await admin.fetchOffsets({ groupId: eosGroup, topics: [topic] })
    const got = {}
    for (const t of offs) for (const p of t.partitions) got[p.partition] = p.offset
    const want = {}
    for (const o of sentOffsets) want[o.partition] = o.offset
    expect(JSON.stringify(got) === JSON.stringify(want), `group ${eosGroup}'s offsets (OffsetFetch) ${JSON.stringify(got)} are those sent in the committed transaction ${JSON.stringify(want)}`)
  } catch (e) {
    expect(false, `fetchOffsets: ${e}`)
  }

  // Fencing: a second producer with the same transactionalId bumps the epoch (kafkajs sends
  // InitProducerId on its first transaction(), not on connect()); the first one's next
  // transaction must fail, and the second one's commit.
  const producer2 = newProducer()
  await producer2.connect()
  let txn2
  try {
    txn2 = await producer2.transaction()
  } catch (e) {
    expect(false, `a second producer with the same transactionalId: transaction(): ${e}`)
    return
  }
  let fenced = null
  try {
    const txn = await producer.transaction()
    await txn.send({ topic, messages: [{ value: 'zombie', partition: 0 }] })
    await txn.commit()
  } catch (e) {
    fenced = e
  }
  expect(fenced !== null, `the first (fenced) producer's transaction fails once a second producer with the same transactionalId began one: ${fenced && (fenced.type || fenced.name)}`)
  try {
    await txn2.send({ topic, messages: [{ value: 'after-fence', partition: 0 }] })
    await txn2.commit()
    expect(true, 'the second producer commits its transaction')
  } catch (e) {
    expect(false, `the second producer's transaction: ${e}`)
  }
  await Promise.all([producer.disconnect(), producer2.disconnect(), admin.disconnect()])
}

run('txn.js', main)
