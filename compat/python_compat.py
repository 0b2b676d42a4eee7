#!/usr/bin/python3
"""confluent-kafka-python (librdkafka) compatibility checks against a running broker.

Run by compat/run.sh with Debian's /usr/bin/python3 (python3-confluent-kafka), one check per call
(plus `create-topic --topic T --partitions N`, a helper for the kcat checks):

  python_compat.py --broker 127.0.0.1:9092 admin
  python_compat.py --broker 127.0.0.1:9092 produce-consume --codec zstd
  python_compat.py --broker 127.0.0.1:9092 group --assignor cooperative-sticky

admin            AdminClient: create_topics (partitions, replication factor 1, configs), the errors
                 for an existing topic and an invalid name, list_topics, describe_configs for a
                 topic and for the broker, alter_configs and create_partitions on the topic (and
                 the error for shrinking it), delete_topics.
produce-consume  an idempotent acks=all Producer with one compression codec writes keyed records
                 with headers, timestamps, null keys and values and one large record to a fresh
                 3-partition topic; every delivery report must succeed with contiguous offsets.
                 An assign()-based Consumer (no group protocol, no commits) reads them back from
                 OFFSET_BEGINNING and every field must match exactly. Watermarks and
                 offsets_for_times (ListOffsets) are checked too.
group            subscribe()-based group consumers (--assignor range | roundrobin |
                 cooperative-sticky) on a fresh 4-partition topic, committing synchronously
                 (every 50 records, on every revocation, before close): a alone gets all
                 partitions; b joins and the rebalance splits them (cooperative: a revokes only
                 what b gets); together they read every record exactly once; the group's committed
                 offsets are the partition ends; b leaves and a takes its partitions back at b's
                 commits; a closes; a new member d reads exactly the records produced since.

Exit status 0 when every assertion holds; otherwise each failed assertion is printed.
"""

import argparse
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

PARTITIONS = 3
LARGE_RECORD_BYTES = 300 * 1024


class Check:
    """Collects failed assertions so one run reports all of them."""

    def __init__(self):
        self.failures = []

    def ok(self, msg):
        print("ok:   " + msg)

    def fail(self, msg):
        print("FAIL: " + msg)
        self.failures.append(msg)

    def expect(self, cond, msg):
        if cond:
            self.ok(msg)
        else:
            self.fail(msg)
        return cond


def common_conf(broker):
    return {
        "bootstrap.servers": broker,
        # Fail within the per-check timeout instead of librdkafka's 5-minute defaults.
        "socket.timeout.ms": 30000,
        "api.version.request": True,
    }


def client_errors(conf, sink):
    """Routes librdkafka's global error callback into `sink` (a list)."""
    conf["error_cb"] = lambda err: sink.append(err)
    return conf


def wait_futures(futures, timeout=30):
    """{key: future} -> {key: (result, KafkaError or exception or None)}"""
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = (fut.result(timeout=timeout), None)
        except KafkaException as e:
            out[key] = (None, e.args[0])
        except Exception as e:  # noqa: BLE001 - report whatever the client raised
            out[key] = (None, e)
    return out


def err_code(err):
    return err.code() if isinstance(err, KafkaError) else None


def create_topic(admin, name, partitions, config=None):
    res = wait_futures(
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=30,
        )
    )
    return res[name][1]


def wait_topic(admin, name, partitions, timeout=15):
    """Waits until metadata lists `name` with `partitions` partitions that all have a leader."""
    deadline = time.time() + timeout
    md = None
    while time.time() < deadline:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.error is None and p.leader >= 0 for p in t.partitions.values())
        ):
            return md
        time.sleep(0.2)
    return None


# --- admin -----------------------------------------------------------------------------------


def check_admin(args):
    c = Check()
    errs = []
    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    name = "compat-py-admin-" + args.run_id

    err = create_topic(admin, name, 4, {"retention.ms": "3600000", "cleanup.policy": "delete"})
    c.expect(err is None, "create_topics %s (4 partitions, rf 1, retention.ms, cleanup.policy): %s" % (name, err or "created"))

    md = wait_topic(admin, name, 4)
    if c.expect(md is not None, "list_topics shows %s with 4 partitions, each with a leader" % name):
        brokers = list(md.brokers.values())
        c.expect(len(brokers) == 1, "list_topics lists one broker: %s" % brokers)
        if brokers:
            b = brokers[0]
            c.expect("%s:%d" % (b.host, b.port) == args.broker, "broker advertised as %s:%d, clients use %s" % (b.host, b.port, args.broker))
            leaders = {p.leader for p in md.topics[name].partitions.values()}
            c.expect(leaders == {b.id}, "partition leaders %s are the broker (id %d)" % (leaders, b.id))
            replicas_ok = all(list(p.replicas) == [b.id] and list(p.isrs) == [b.id] for p in md.topics[name].partitions.values())
            c.expect(replicas_ok, "each partition has replicas [%d] and isr [%d]" % (b.id, b.id))

    # A second create of the same name: TOPIC_ALREADY_EXISTS.
    err = create_topic(admin, name, 4)
    c.expect(err_code(err) == KafkaError.TOPIC_ALREADY_EXISTS, "create_topics again gives TOPIC_ALREADY_EXISTS: got %s" % err)

    # An invalid name: INVALID_TOPIC_EXCEPTION (librdkafka: TOPIC_EXCEPTION).
    bad = "compat bad/name"
    err = create_topic(admin, bad, 1)
    c.expect(err_code(err) == KafkaError.TOPIC_EXCEPTION, "create_topics %r gives INVALID_TOPIC_EXCEPTION: got %s" % (bad, err))

    # All topics listing includes ours.
    md_all = admin.list_topics(timeout=10)
    c.expect(name in md_all.topics, "list_topics() (all topics) includes %s (%d topics listed)" % (name, len(md_all.topics)))

    # DescribeConfigs for the topic: the configs given at creation come back.
    res = wait_futures(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)]))
    (configs, err), = res.values()
    if c.expect(err is None, "describe_configs(topic %s): %s" % (name, err or "answered")):
        got = {k: v.value for k, v in configs.items()}
        c.expect(got.get("retention.ms") == "3600000", "topic config retention.ms = %r (want '3600000')" % got.get("retention.ms"))
        c.expect(got.get("cleanup.policy") == "delete", "topic config cleanup.policy = %r (want 'delete')" % got.get("cleanup.policy"))
        print("      topic configs: %d entries, e.g. %s" % (len(got), sorted(got)[:8]))

    # DescribeConfigs for the broker.
    broker_id = next(iter(admin.list_topics(timeout=10).brokers))
    res = wait_futures(admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, str(broker_id))]))
    (configs, err), = res.values()
    if c.expect(err is None, "describe_configs(broker %d): %s" % (broker_id, err or "answered")):
        c.expect(len(configs) > 0, "broker configs: %d entries, e.g. %s" % (len(configs), sorted(configs)[:8]))

    # AlterConfigs (librdkafka's alter_configs replaces the topic's overrides), seen by DescribeConfigs.
    res = wait_futures(admin.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, name,
                                                           set_config={"retention.ms": "7200000"})]))
    (_, err), = res.values()
    if c.expect(err is None, "alter_configs(topic %s, retention.ms=7200000): %s" % (name, err or "altered")):
        res = wait_futures(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)]))
        (configs, err), = res.values()
        got = {k: v.value for k, v in (configs or {}).items()}
        c.expect(got.get("retention.ms") == "7200000", "after alter_configs retention.ms = %r (want '7200000')" % got.get("retention.ms"))

    # CreatePartitions: 4 -> 6, seen in the metadata; shrinking is INVALID_PARTITIONS.
    res = wait_futures(admin.create_partitions([NewPartitions(name, 6)], operation_timeout=30))
    err = res[name][1]
    if c.expect(err is None, "create_partitions(%s, 6): %s" % (name, err or "grown")):
        c.expect(wait_topic(admin, name, 6) is not None, "list_topics shows %s with 6 partitions" % name)
    res = wait_futures(admin.create_partitions([NewPartitions(name, 2)], operation_timeout=30))
    err = res[name][1]
    c.expect(err_code(err) == KafkaError.INVALID_PARTITIONS, "create_partitions(%s, 2) gives INVALID_PARTITIONS: got %s" % (name, err))

    # DeleteTopics, then the topic leaves the metadata.
    res = wait_futures(admin.delete_topics([name], operation_timeout=30))
    err = res[name][1]
    if c.expect(err is None, "delete_topics %s: %s" % (name, err or "deleted")):
        deadline = time.time() + 15
        gone = False
        while time.time() < deadline and not gone:
            gone = name not in admin.list_topics(timeout=10).topics
            if not gone:
                time.sleep(0.2)
        c.expect(gone, "%s no longer listed after delete_topics" % name)

    res = wait_futures(admin.delete_topics(["compat-py-never-created-" + args.run_id], operation_timeout=30))
    (_, err), = res.values()
    c.expect(err_code(err) == KafkaError.UNKNOWN_TOPIC_OR_PART, "delete_topics of an unknown topic gives UNKNOWN_TOPIC_OR_PARTITION: got %s" % err)

    report_client_errors(c, errs)
    return c


def check_create_topic(args):
    """Helper for the kcat checks: a topic with several partitions, ready to use."""
    c = Check()
    admin = AdminClient(common_conf(args.broker))
    err = create_topic(admin, args.topic, args.partitions)
    if c.expect(err is None, "create_topics %s (%d partitions): %s" % (args.topic, args.partitions, err or "created")):
        c.expect(wait_topic(admin, args.topic, args.partitions) is not None, "%s listed with %d partitions" % (args.topic, args.partitions))
    return c


# --- produce and consume ---------------------------------------------------------------------


def make_records(n, codec, base_ts):
    """Deterministic records: (partition, key, value, headers, timestamp_ms)."""
    recs = []
    large_at = n // 2
    for i in range(n):
        key = None if i % 50 == 7 else b"k%06d" % i
        if i % 100 == 13:
            value = None  # tombstone
        elif i == large_at:
            value = bytes((j * 31 + i) % 256 for j in range(LARGE_RECORD_BYTES))
        elif i % 10 == 3:
            value = bytes(range(256)) * (1 + i % 4)  # every byte value
        elif i % 10 == 5:
            value = b""
        else:
            value = b"v%06d-%s-" % (i, codec.encode()) + b"ringtail " * (i % 23)
        if i % 4 == 0:
            headers = None
        else:
            headers = [("idx", b"%d" % i), ("codec", codec.encode())]
            if i % 4 == 2:
                headers.append(("empty", b""))
                headers.append(("idx", b"dup"))  # repeated header keys keep their order
        recs.append((i % PARTITIONS, key, value, headers, base_ts + i))
    return recs


def norm_headers(h):
    return [(k, bytes(v) if v is not None else None) for k, v in (h or [])]


def check_produce_consume(args):
    c = Check()
    errs = []
    codec = args.codec
    topic = "compat-py-%s-%s" % (codec, args.run_id)
    base_ts = int(time.time() * 1000) - 3_600_000  # an hour ago: plainly the producer's timestamps

    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    err = create_topic(admin, topic, PARTITIONS)
    if err is not None:
        c.fail("create_topics %s: %s (the produce below relies on it)" % (topic, err))
    elif wait_topic(admin, topic, PARTITIONS) is None:
        c.fail("topic %s not listed with %d partitions after create_topics" % (topic, PARTITIONS))
    else:
        c.ok("topic %s created with %d partitions" % (topic, PARTITIONS))

    # --- produce ---
    pconf = client_errors(common_conf(args.broker), errs)
    pconf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": codec,
            "message.timeout.ms": 30000,
            "linger.ms": 5,
        }
    )
    producer = Producer(pconf)
    recs = make_records(args.records, codec, base_ts)
    delivered = {}  # idx -> (err, partition, offset)

    def on_delivery(idx):
        def cb(err, msg):
            delivered[idx] = (err, msg.partition(), msg.offset())

        return cb

    t0 = time.time()
    for i, (part, key, value, headers, ts) in enumerate(recs):
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=part, headers=headers, timestamp=ts, on_delivery=on_delivery(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(30)
    c.expect(left == 0, "producer.flush: %d records still undelivered" % left)
    print("      produced %d records in %.2fs" % (len(recs), time.time() - t0))

    bad = {i: d for i, d in delivered.items() if d[0] is not None}
    c.expect(len(delivered) == len(recs), "delivery reports: %d of %d" % (len(delivered), len(recs)))
    c.expect(not bad, "all delivery reports successful (%d failed%s)" % (len(bad), ", first: %s" % (sorted(bad.items())[0],) if bad else ""))

    # Offsets are assigned in produce order, contiguous from 0, on the partition asked for.
    offsets_ok = True
    for p in range(PARTITIONS):
        idxs = [i for i in range(len(recs)) if recs[i][0] == p]
        got = [delivered.get(i, (None, None, None)) for i in idxs]
        if [g[1] for g in got] != [p] * len(idxs) or [g[2] for g in got] != list(range(len(idxs))):
            offsets_ok = False
            print("      partition %d: first delivered (partition, offset): %s" % (p, [g[1:] for g in got[:5]]))
    c.expect(offsets_ok, "delivered offsets are 0..n-1 per partition in produce order")

    # --- list offsets ---
    cconf = client_errors(common_conf(args.broker), errs)
    cconf.update(
        {
            # Required by the client, unused: no subscribe(), no commits, so no group protocol.
            "group.id": "compat-py-unused-" + args.run_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "check.crcs": True,
        }
    )
    consumer = Consumer(cconf)
    counts = [sum(1 for r in recs if r[0] == p) for p in range(PARTITIONS)]
    try:
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)]
        c.expect(marks == [(0, n) for n in counts], "watermarks (ListOffsets earliest/latest) %s, want %s" % (marks, [(0, n) for n in counts]))
    except KafkaException as e:
        c.fail("get_watermark_offsets: %s" % e)

    # offsets_for_times: record i carries timestamp base_ts+i, so base_ts+i finds record i's offset.
    # One probe per partition (a client asks once per partition): a record in the middle of it.
    probe = []
    for p in range(PARTITIONS):
        idxs = [i for i in range(len(recs)) if recs[i][0] == p]
        if idxs:
            probe.append(idxs[len(idxs) // 2])
    try:
        want = []
        query = []
        for i in probe:
            query.append(TopicPartition(topic, recs[i][0], recs[i][4]))
            want.append((recs[i][0], delivered.get(i, (None, None, None))[2]))
        got = consumer.offsets_for_times(query, timeout=10)
        got = [(tp.partition, tp.offset) for tp in got]
        c.expect(got == want, "offsets_for_times (ListOffsets by timestamp) %s, want %s" % (got, want))
    except KafkaException as e:
        c.fail("offsets_for_times: %s" % e)

    # --- consume ---
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = {p: [] for p in range(PARTITIONS)}
    eof = set()
    consume_errors = []
    deadline = time.time() + 30
    while time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if len(got[msg.partition()]) >= counts[msg.partition()]:
                    eof.add(msg.partition())
                if len(eof) == PARTITIONS:
                    break
                continue
            consume_errors.append(msg.error())
            if len(consume_errors) > 20:
                break
            continue
        got[msg.partition()].append(msg)
    consumer.close()
    c.expect(not consume_errors, "consumer errors: %s" % (consume_errors[:5] or "none"))
    c.expect(len(eof) == PARTITIONS, "consumer reached the end of all %d partitions (got %s records, want %s)" % (PARTITIONS, [len(got[p]) for p in range(PARTITIONS)], counts))

    mismatches = []
    for p in range(PARTITIONS):
        idxs = [i for i in range(len(recs)) if recs[i][0] == p]
        msgs = got[p]
        if len(msgs) != len(idxs):
            mismatches.append("partition %d: %d records consumed, %d produced" % (p, len(msgs), len(idxs)))
        for i, m in zip(idxs, msgs):
            _, key, value, headers, ts = recs[i]
            want_off = delivered.get(i, (None, None, None))[2]
            diffs = []
            if m.offset() != want_off:
                diffs.append("offset %s != delivered %s" % (m.offset(), want_off))
            if m.key() != key:
                diffs.append("key %r != %r" % (m.key()[:40] if m.key() else m.key(), key))
            if m.value() != value:
                diffs.append("value (%s bytes) != produced (%s bytes)" % (None if m.value() is None else len(m.value()), None if value is None else len(value)))
            if norm_headers(m.headers()) != norm_headers(headers):
                diffs.append("headers %s != %s" % (m.headers(), headers))
            if m.timestamp() != (TIMESTAMP_CREATE_TIME, ts):
                diffs.append("timestamp %s != (CreateTime, %d)" % (m.timestamp(), ts))
            if diffs:
                mismatches.append("partition %d offset %s (record %d): %s" % (p, m.offset(), i, "; ".join(diffs)))
    for line in mismatches[:15]:
        print("      " + line)
    c.expect(
        not mismatches,
        "every consumed record matches its produced record exactly, in order (%d mismatches) — codec %s, %d records incl. a %d KiB one"
        % (len(mismatches), codec, len(recs), LARGE_RECORD_BYTES // 1024),
    )

    report_client_errors(c, errs)
    return c


# --- consumer groups -------------------------------------------------------------------------

GROUP_PARTITIONS = 4


class Member:
    """One subscribe()-based group consumer, polled by the test loop (single thread).

    Offsets are committed synchronously: every COMMIT_EVERY records, on every revocation (so a
    partition moves to another member at exactly the next unprocessed record) and before close.
    """

    COMMIT_EVERY = 50

    def __init__(self, c, name, conf, topic, errs):
        self.c = c
        self.name = name
        self.records = []  # (partition, offset, index)
        self.events = []  # ("assign" | "revoke" | "lost", [partitions])
        self.errors = []  # consume and commit errors
        self.since_commit = 0
        self.commits = 0
        conf = client_errors(dict(conf), errs)
        conf["client.id"] = "compat-py-" + name
        self.consumer = Consumer(conf)
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _on_assign(self, consumer, parts):
        self.events.append(("assign", sorted(p.partition for p in parts)))
        # No assign()/incremental_assign() here: the client applies the assignment itself, eagerly
        # or incrementally per the negotiated protocol.

    def _on_revoke(self, consumer, parts):
        self.events.append(("revoke", sorted(p.partition for p in parts)))
        self.commit("on revoke of %s" % sorted(p.partition for p in parts))

    def _on_lost(self, consumer, parts):
        self.events.append(("lost", sorted(p.partition for p in parts)))

    def commit(self, why):
        try:
            self.consumer.commit(asynchronous=False)
            self.commits += 1
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                self.errors.append("commit (%s): %s" % (why, e.args[0]))
        self.since_commit = 0

    def poll(self, timeout=0.05):
        msg = self.consumer.poll(timeout)
        if msg is None:
            return None
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                self.errors.append("consume: %s" % msg.error())
            return msg
        self.records.append((msg.partition(), msg.offset(), int(msg.value()[1:])))
        self.since_commit += 1
        if self.since_commit >= self.COMMIT_EVERY:
            self.commit("every %d records" % self.COMMIT_EVERY)
        return msg

    def assignment(self):
        return sorted(p.partition for p in self.consumer.assignment())

    def close(self):
        self.commit("before close")
        self.consumer.close()


def poll_until(members, cond, timeout=30):
    """Polls every member (without blocking on any one of them: one idle member must not slow
    down another's stream) until cond() holds or the timeout passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = False
        for m in members:
            for _ in range(100):
                if m.poll(0) is None:
                    break
                busy = True
        if cond():
            return True
        if not busy:
            time.sleep(0.01)
    return False


def check_group(args):
    c = Check()
    errs = []
    strategy = args.assignor
    topic = "compat-py-group-%s-%s" % (strategy, args.run_id)
    group = topic
    n = args.records
    half = n // 2
    m = max(n // 4, GROUP_PARTITIONS)

    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    err = create_topic(admin, topic, GROUP_PARTITIONS)
    if err is not None or wait_topic(admin, topic, GROUP_PARTITIONS) is None:
        c.fail("create topic %s with %d partitions: %s" % (topic, GROUP_PARTITIONS, err or "not listed"))
        return c
    c.ok("topic %s created with %d partitions" % (topic, GROUP_PARTITIONS))

    pconf = client_errors(common_conf(args.broker), errs)
    pconf.update({"acks": "all", "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 30000})
    producer = Producer(pconf)

    def produce(lo, hi):
        """Record i goes to partition i % 4, value g<i>; all must be delivered."""
        failed = []

        def cb(err, msg):
            if err is not None:
                failed.append(err)

        for i in range(lo, hi):
            while True:
                try:
                    producer.produce(topic, key=b"k%06d" % i, value=b"g%06d" % i, partition=i % GROUP_PARTITIONS, on_delivery=cb)
                    break
                except BufferError:
                    producer.poll(0.1)
        left = producer.flush(30)
        return c.expect(left == 0 and not failed, "produced records %d..%d (%d undelivered, %d failed%s)" % (lo, hi - 1, left, len(failed), ": %s" % failed[0] if failed else ""))

    cconf = common_conf(args.broker)
    cconf.update(
        {
            "group.id": group,
            "partition.assignment.strategy": strategy,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
    )
    cooperative = strategy == "cooperative-sticky"

    def indexes(members, lo=0, hi=None):
        return [r[2] for mb in members for r in mb.records if r[2] >= lo and (hi is None or r[2] < hi)]

    # 1. Member a alone gets all partitions and starts reading the first half.
    if not produce(0, half):
        return c
    a = Member(c, "a", cconf, topic, errs)
    got = poll_until([a], lambda: a.assignment() == list(range(GROUP_PARTITIONS)))
    if not c.expect(got, "member a alone is assigned all %d partitions (assignment %s, events %s)" % (GROUP_PARTITIONS, a.assignment(), a.events)):
        a.consumer.close()
        return c
    poll_until([a], lambda: len(a.records) >= half // 2, timeout=10)

    # 2. Member b joins: a rebalance gives each a share.
    b = Member(c, "b", cconf, topic, errs)

    def split():
        sa, sb = a.assignment(), b.assignment()
        return sa and sb and sorted(sa + sb) == list(range(GROUP_PARTITIONS))

    got = poll_until([a, b], split)
    sa, sb = a.assignment(), b.assignment()
    if not c.expect(got, "after b joined, a and b hold disjoint shares of the %d partitions: a %s, b %s" % (GROUP_PARTITIONS, sa, sb)):
        print("      events a: %s\n      events b: %s" % (a.events, b.events))
        for mb in (b, a):
            mb.consumer.close()
        return c
    print("      events a: %s" % a.events)
    print("      events b: %s" % b.events)
    if cooperative:
        # Incremental rebalance: a gives up only what b gets and keeps the rest throughout.
        revoked = [p for ev, ps in a.events if ev == "revoke" for p in ps]
        c.expect(sorted(revoked) == sb, "cooperative: a revoked exactly b's partitions %s (revoked %s)" % (sb, sorted(revoked)))
    else:
        c.expect(("revoke", list(range(GROUP_PARTITIONS))) in a.events, "eager: a gave up its whole assignment in the rebalance (events %s)" % a.events)

    # 3. The second half, produced after the split, read by the owner of each partition only.
    if not produce(half, n):
        return c
    poll_until([a, b], lambda: len(set(indexes([a, b]))) >= n)
    seen = indexes([a, b])
    c.expect(set(seen) == set(range(n)), "a and b together read all %d records (%d distinct, %d missing)" % (n, len(set(seen)), len(set(range(n)) - set(seen))))
    wrong = [(mb.name, r) for mb, own in ((a, sa), (b, sb)) for r in mb.records if r[2] >= half and r[0] not in own]
    na, nb = len(indexes([a], half)), len(indexes([b], half))
    c.expect(na > 0 and nb > 0 and not wrong, "records produced after the split: a read %d, b %d, each only from its own partitions (%d misplaced%s)" % (na, nb, len(wrong), ", first %s" % (wrong[:3],) if wrong else ""))
    dups = len(seen) - len(set(seen))
    c.expect(dups == 0, "no record read twice across the rebalance, with synchronous commits on revoke (%d duplicates)" % dups)

    # Commit, then the group's committed offsets (OffsetFetch) are the end of every partition.
    a.commit("after reading everything")
    b.commit("after reading everything")
    want = {p: len(range(p, n, GROUP_PARTITIONS)) for p in range(GROUP_PARTITIONS)}
    try:
        committed = {tp.partition: tp.offset for tp in a.consumer.committed([TopicPartition(topic, p) for p in range(GROUP_PARTITIONS)], timeout=10)}
        c.expect(committed == want, "committed offsets of the group (OffsetFetch) %s, want the end offsets %s" % (committed, want))
    except KafkaException as e:
        c.fail("committed(): %s" % e)

    # 4. b leaves (close: commit, LeaveGroup): a gets every partition back and, for b's old ones,
    # resumes at b's commits: it reads exactly the records produced after that.
    b.close()
    got = poll_until([a], lambda: a.assignment() == list(range(GROUP_PARTITIONS)))
    c.expect(got, "after b left, a is assigned all partitions again (assignment %s, events %s)" % (a.assignment(), a.events))
    before = len(a.records)
    if not produce(n, n + m):
        return c
    poll_until([a], lambda: len(set(indexes([a], n))) >= m)
    newly = [r[2] for r in a.records[before:]]
    c.expect(sorted(newly) == list(range(n, n + m)), "a, now alone, read exactly the %d new records (read %d, %d of them older)" % (m, len(newly), sum(1 for i in newly if i < n)))
    a.close()

    # 5. Everyone gone; M more records; a new member resumes from the committed offsets.
    if not produce(n + m, n + 2 * m):
        return c
    dconf = dict(cconf)
    dconf["enable.partition.eof"] = True
    d = Member(c, "d", dconf, topic, errs)
    eof = set()

    def done():
        return len(eof) == GROUP_PARTITIONS and len(d.records) >= m

    deadline = time.time() + 30
    while time.time() < deadline and not done():
        msg = d.poll(0.1)
        if msg is not None and msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
            eof.add(msg.partition())
    got = sorted(r[2] for r in d.records)
    c.expect(got == list(range(n + m, n + 2 * m)), "a new member d read exactly the %d records produced after the last commit (read %d: %d older, %d missing; reached the end of %d partitions)" % (m, len(got), sum(1 for i in got if i < n + m), len(set(range(n + m, n + 2 * m)) - set(got)), len(eof)))
    d.close()

    for mb in (a, b, d):
        for e in mb.errors:
            print("      %s: %s" % (mb.name, e))
        c.expect(not mb.errors, "member %s: no consume or commit errors (%d), %d synchronous commits" % (mb.name, len(mb.errors), mb.commits))
    report_client_errors(c, errs)
    return c


def report_client_errors(c, errs):
    # librdkafka reports connection-level trouble here (e.g. a broker closing connections).
    # _ALL_BROKERS_DOWN and _TRANSPORT during the run mean the broker dropped us.
    serious = [e for e in errs if e.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._MSG_TIMED_OUT)]
    for e in errs:
        print("      client error_cb: %s" % e)
    c.expect(not serious, "no connection-level client errors (%d reported)" % len(serious))


def check_parser(doc):
    """The command line shared by the check scripts: --broker, --records, --run-id and one
    subcommand per check (added by the caller to the returned subparsers)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", required=True, help="host:port")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--run-id", default=str(int(time.time())))
    return ap, ap.add_subparsers(dest="check", required=True)


def main():
    ap, sub = check_parser(__doc__)
    sub.add_parser("admin")
    ct = sub.add_parser("create-topic")
    ct.add_argument("--topic", required=True)
    ct.add_argument("--partitions", type=int, required=True)
    pc = sub.add_parser("produce-consume")
    pc.add_argument("--codec", required=True, choices=["none", "gzip", "snappy", "lz4", "zstd"])
    gr = sub.add_parser("group")
    gr.add_argument("--assignor", default="range", choices=["range", "roundrobin", "cooperative-sticky"])
    args = ap.parse_args()

    run_check({"admin": check_admin, "create-topic": check_create_topic, "produce-consume": check_produce_consume, "group": check_group}, args)


def run_check(checks, args):
    """Runs the check args.check names and exits 1 when any of its assertions failed."""
    c = checks[args.check](args)
    if c.failures:
        print("%d assertion(s) failed" % len(c.failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
