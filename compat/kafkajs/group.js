#!/usr/bin/env node
// compat/kafkajs/group.js — kafkajs consumer group against a running Ringtail broker.
//
//   node group.js --broker 127.0.0.1:9092 [--records 1000] [--run-id ID]
//
// Run by compat/run.sh after `npm ci` in this folder. On a fresh 4-partition topic:
//   1. an acks=-1 producer sends the first half of N records (record i to partition i % 4);
//      consumer a joins the group alone and is assigned all 4 partitions;
//   2. consumer b joins: after the rebalance a and b hold disjoint shares covering the 4 partitions
//      (DescribeGroups: Stable, 2 members; ListGroups lists the group);
//   3. the second half is produced; together a and b see every record at least once, and each
//      record of the second half is seen by the owner of its partition only;
//   4. both disconnect (kafkajs commits what it processed); the group's committed offsets
//      (OffsetFetch) are the end of every partition;
//   5. M more records; a fresh consumer in the group reads exactly those M and nothing older.
// Prints ok:/FAIL: lines and exits 0 only when every assertion holds.
'use strict'

// Records name their partition explicitly, so the v2 default-partitioner notice is noise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { parseArgs, expect, waitFor, range, sorted, same, connect, run } = require('./lib')

const PARTITIONS = 4

async function main() {
  const args = parseArgs(process.argv)
  const n = args.records
  const half = Math.floor(n / 2)
  const m = Math.max(Math.floor(n / 4), PARTITIONS)
  const topic = `compat-kafkajs-group-${args.runId}`
  const groupId = topic

  const { kafka, admin } = await connect(args, 'ringtail-compat-kafkajs', topic, PARTITIONS)

  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  async function produce(lo, hi) {
    const messages = range(lo, hi).map((i) => ({
      key: `k${String(i).padStart(6, '0')}`,
      value: `g${String(i).padStart(6, '0')}`,
      partition: i % PARTITIONS,
    }))
    let err = null
    try {
      for (let k = 0; k < messages.length; k += 200) {
        await producer.send({ topic, acks: -1, messages: messages.slice(k, k + 200) })
      }
    } catch (e) {
      err = e
    }
    return expect(!err, `produced records ${lo}..${hi - 1} with acks -1${err ? ': ' + err : ''}`)
  }

  // A group member: records seen as [partition, offset, index]; its latest assignment from the
  // GROUP_JOIN event (kafkajs' default round-robin assigner, computed by the group leader).
  async function member(name) {
    const consumer = kafka.consumer({
      groupId,
      allowAutoTopicCreation: true,
      sessionTimeout: 10000,
      rebalanceTimeout: 20000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 500,
    })
    const mb = { name, consumer, records: [], assignment: null, joins: 0, crashed: null }
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      mb.joins++
      mb.assignment = sorted((e.payload.memberAssignment || {})[topic] || [])
    })
    consumer.on(consumer.events.CRASH, (e) => {
      mb.crashed = e.payload.error
    })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        mb.records.push([partition, Number(message.offset), parseInt(message.value.toString().slice(1), 10)])
      },
    })
    return mb
  }
  const indexes = (mbs, lo = 0, hi = Infinity) =>
    mbs.flatMap((mb) => mb.records.map((r) => r[2]).filter((i) => i >= lo && i < hi))

  // 1. a alone.
  if (!(await produce(0, half))) return
  const a = await member('a')
  let ok = await waitFor(() => a.assignment && same(a.assignment, range(0, PARTITIONS)))
  if (!expect(ok, `consumer a alone is assigned all ${PARTITIONS} partitions (assignment ${JSON.stringify(a.assignment)})`)) {
    await a.consumer.disconnect()
    return
  }
  await waitFor(() => a.records.length >= half / 2, 10000)

  // 2. b joins.
  const b = await member('b')
  const split = () =>
    a.assignment && b.assignment && a.assignment.length > 0 && b.assignment.length > 0 &&
    same(sorted([...a.assignment, ...b.assignment]), range(0, PARTITIONS))
  ok = await waitFor(split)
  const sa = a.assignment
  const sb = b.assignment
  if (!expect(ok, `after b joined, a and b hold disjoint shares of the partitions: a ${JSON.stringify(sa)}, b ${JSON.stringify(sb)} (joins: a ${a.joins}, b ${b.joins})`)) {
    await Promise.all([a.consumer.disconnect(), b.consumer.disconnect()])
    return
  }
  try {
    const { groups } = await admin.describeGroups([groupId])
    const g = groups[0] || {}
    expect(
      g.state === 'Stable' && g.protocolType === 'consumer' && (g.members || []).length === 2,
      `DescribeGroups: state ${g.state}, protocol type ${g.protocolType}, protocol ${g.protocol}, ${(g.members || []).length} members (want Stable, consumer, 2)`,
    )
    const listed = await admin.listGroups()
    expect(listed.groups.some((x) => x.groupId === groupId), `ListGroups lists ${groupId} (${listed.groups.length} groups)`)
  } catch (e) {
    expect(false, `DescribeGroups/ListGroups: ${e}`)
  }

  // 3. The second half.
  if (!(await produce(half, n))) return
  await waitFor(() => new Set(indexes([a, b])).size >= n)
  const seen = new Set(indexes([a, b]))
  const missing = range(0, n).filter((i) => !seen.has(i))
  expect(missing.length === 0, `a and b together saw all ${n} records at least once (${seen.size} distinct, ${missing.length} missing${missing.length ? ', first ' + missing.slice(0, 5) : ''})`)
  const wrong = []
  for (const [mb, own] of [[a, sa], [b, sb]]) {
    for (const r of mb.records) if (r[2] >= half && !own.includes(r[0])) wrong.push(`${mb.name}:${JSON.stringify(r)}`)
  }
  const na = indexes([a], half).length
  const nb = indexes([b], half).length
  expect(na > 0 && nb > 0 && wrong.length === 0, `records produced after the split: a saw ${na}, b ${nb}, each only from its own partitions (${wrong.length} misplaced${wrong.length ? ', first ' + wrong.slice(0, 3) : ''})`)
  const dups = indexes([a, b]).length - seen.size
  console.log(`      records seen more than once across the rebalance: ${dups} (at-least-once; kafkajs commits per batch)`)

  // 4. Both leave; their commits are the group's offsets.
  await Promise.all([a.consumer.disconnect(), b.consumer.disconnect()])
  for (const mb of [a, b]) expect(!mb.crashed, `consumer ${mb.name} did not crash${mb.crashed ? ': ' + mb.crashed : ''}`)
  try {
    const offs = await admin.fetchOffsets({ groupId, topics: [topic] })
    const got = {}
    for (const t of offs) for (const p of t.partitions) got[p.partition] = Number(p.offset)
    const want = {}
    for (let p = 0; p < PARTITIONS; p++) want[p] = range(0, n).filter((i) => i % PARTITIONS === p).length
    expect(JSON.stringify(got) === JSON.stringify(want), `committed offsets after disconnect (OffsetFetch) ${JSON.stringify(got)}, want the end offsets ${JSON.stringify(want)}`)
  } catch (e) {
    expect(false, `fetchOffsets: ${e}`)
  }

  // 5. A fresh consumer reads exactly the M new records. Within a partition older records would
  // come first, so once all M new ones are seen any older one would have been seen too.
  if (!(await produce(n, n + m))) return
  const c = await member('c')
  await waitFor(() => new Set(indexes([c], n)).size >= m)
  const gotC = sorted(indexes([c]))
  const older = gotC.filter((i) => i < n).length
  expect(same(gotC, range(n, n + m)), `a fresh consumer c read exactly the ${m} records produced after the commits (read ${gotC.length}: ${older} older, ${m - new Set(indexes([c], n)).size} missing; assignment ${JSON.stringify(c.assignment)})`)
  await c.consumer.disconnect()
  expect(!c.crashed, `consumer c did not crash${c.crashed ? ': ' + c.crashed : ''}`)

  await producer.disconnect()
  await admin.disconnect()
}

run('group.js', main)
