#!/usr/bin/python3
"""Leader-change checks for compat/cluster.sh, with confluent-kafka-python (librdkafka).

Run with Debian's /usr/bin/python3 (python3-confluent-kafka), one subcommand per call; --brokers
is the comma-separated list of the three brokers' client addresses:

  create-topic  --topic T --partitions P [--replication-factor 3] [--min-insync 2]
                create T and wait until every partition has a leader and all its replicas in
                its ISR.
  wait-isr      --topic T --replicas R: wait until every partition of T has a leader and R
                members in its ISR (a restarted broker is back in every ISR).
  leader        --topic T --partition P: print the node id of the partition's leader.
  produce       --topic T --partitions P --records N --rate R --out FILE: the client under
                test. An idempotent acks=all Producer writes the values 000000..N-1 (value i to
                partition i % P) at about R a second and appends "i partition offset" to FILE for
                each successful delivery report, as it comes (compat/cluster.sh kills the leader
                once a third are in). It never produces a value twice: a failed delivery report
                or a fatal client error fails the check.
  verify        --topic T --partitions P --records N --delivered FILE: read every partition from
                the beginning to its high watermark and check the values 0..N-1 are there exactly
                once each, in increasing order within each partition, and each at the partition
                and offset its delivery report gave (FILE lines "i partition offset"; an i of
                "-" when the client reports only where, as kcat does).

Exit status 0 when every assertion holds; otherwise each failed assertion is printed.
"""

import argparse
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WAIT = 60  # seconds for any one wait on the cluster


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def ok(msg):
    print("ok:   " + msg)


def admin_for(args):
    return AdminClient({"bootstrap.servers": args.brokers, "socket.timeout.ms": 10000})


def partitions_ready(admin, topic, partitions, replicas):
    """None when topic has `partitions` partitions each with a leader and `replicas` in its ISR,
    otherwise what is not yet so."""
    try:
        md = admin.list_topics(topic=topic, timeout=10)
    except KafkaException as e:
        return "list_topics: %s" % e
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return "topic %s: %s" % (topic, "not listed" if t is None else t.error)
    if len(t.partitions) != partitions:
        return "topic %s: %d partitions listed, want %d" % (topic, len(t.partitions), partitions)
    for p in sorted(t.partitions.values(), key=lambda p: p.id):
        if p.error is not None or p.leader < 0 or len(p.isrs) != replicas:
            return "partition %d: leader %d, replicas %s, ISR %s, error %s" % (p.id, p.leader, p.replicas, p.isrs, p.error)
    return None


def wait_ready(admin, topic, partitions, replicas):
    deadline = time.time() + WAIT
    why = None
    while time.time() < deadline:
        why = partitions_ready(admin, topic, partitions, replicas)
        if why is None:
            return
        time.sleep(0.2)
    fail("after %ds: %s" % (WAIT, why))


def cmd_create_topic(args):
    admin = admin_for(args)
    cfg = {"min.insync.replicas": str(args.min_insync)}
    fut = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=args.replication_factor, config=cfg)], operation_timeout=30)
    try:
        fut[args.topic].result(timeout=WAIT)
    except KafkaException as e:
        fail("create_topics %s: %s" % (args.topic, e.args[0]))
    wait_ready(admin, args.topic, args.partitions, args.replication_factor)
    ok("topic %s: %d partitions, replication factor %d, min.insync.replicas %d, every replica in sync" % (args.topic, args.partitions, args.replication_factor, args.min_insync))


def cmd_wait_isr(args):
    admin = admin_for(args)
    md = admin.list_topics(topic=args.topic, timeout=10)
    t = md.topics.get(args.topic)
    wait_ready(admin, args.topic, len(t.partitions) if t else 0, args.replicas)
    ok("every partition of %s has a leader and %d replicas in its ISR" % (args.topic, args.replicas))


def cmd_leader(args):
    admin = admin_for(args)
    deadline = time.time() + WAIT
    while time.time() < deadline:
        t = admin.list_topics(topic=args.topic, timeout=10).topics.get(args.topic)
        p = t.partitions.get(args.partition) if t is not None else None
        if p is not None and p.error is None and p.leader >= 0:
            print(p.leader)
            return
        time.sleep(0.2)
    fail("no leader for %s/%d within %ds" % (args.topic, args.partition, WAIT))


def cmd_produce(args):
    errors = []  # every error librdkafka reported through error_cb
    fatal = []
    failed = []  # (index, error) of failed delivery reports
    delivered = [0]
    out = open(args.out, "w", buffering=1)

    def on_error(err):
        errors.append(err)
        if err.fatal():
            fatal.append(err)

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                failed.append((i, err))
                return
            delivered[0] += 1
            out.write("%d %d %d\n" % (i, msg.partition(), msg.offset()))

        return cb

    producer = Producer(
        {
            "bootstrap.servers": args.brokers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "error_cb": on_error,
            # librdkafka's defaults ride through a leader change that takes ~10 s (a killed
            # leader is fenced after the 9 s session timeout): retries are unlimited until
            # message.timeout.ms (default 300 s), and a NOT_LEADER_OR_FOLLOWER answer or a lost
            # connection triggers a metadata refresh. Nothing is set for it here; the value below
            # only bounds how long a hung run takes, as a user with a latency budget would.
            "message.timeout.ms": 60000,
        }
    )
    t0 = time.time()
    for i in range(args.records):
        # Pace the stream: value i is due at t0 + i/rate, so the leader is killed mid-stream.
        wait = t0 + i / args.rate - time.time()
        while wait > 0:
            producer.poll(min(wait, 0.05))
            wait = t0 + i / args.rate - time.time()
        while True:
            try:
                producer.produce(args.topic, key=b"k%06d" % i, value=b"%06d" % i, partition=i % args.partitions, on_delivery=on_delivery(i))
                break
            except BufferError:  # local queue full: wait for deliveries, the same message again
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(90)
    out.close()
    print("      produced %d values in %.1fs: %d delivered, %d failed, %d left in the queue" % (args.records, time.time() - t0, delivered[0], len(failed), left))
    for e in errors:
        print("      error_cb%s: %s" % (" (FATAL)" if e.fatal() else " (not fatal)", e))
    bad = False
    if fatal:
        print("FAIL: fatal client error: %s" % fatal[0])
        bad = True
    if failed:
        print("FAIL: %d delivery reports failed, first: value %d: %s" % (len(failed), failed[0][0], failed[0][1]))
        bad = True
    if left or delivered[0] != args.records:
        print("FAIL: %d of %d values delivered (%d still queued after flush)" % (delivered[0], args.records, left))
        bad = True
    if bad:
        sys.exit(1)
    ok("all %d values delivered, no failed delivery report, no fatal error (%d non-fatal errors reported)" % (args.records, len(errors)))


def cmd_verify(args):
    delivered = {}  # (partition, offset) -> index or None
    for line in open(args.delivered):
        i, p, o = line.split()
        if (int(p), int(o)) in delivered:
            fail("two delivery reports for partition %s offset %s" % (p, o))
        delivered[(int(p), int(o))] = None if i == "-" else int(i)

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": "compat-failover-verify",  # required by the client; no subscribe(), no commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
        }
    )
    tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    ends = {}
    for tp in tps:
        try:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as e:
            fail("watermarks of %s/%d: %s" % (args.topic, tp.partition, e))
        ends[tp.partition] = hi
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(args.partitions)])
    got = {p: [] for p in range(args.partitions)}  # partition -> [(offset, index)]
    done = {p for p in range(args.partitions) if ends[p] == 0}
    deadline = time.time() + WAIT
    while len(done) < args.partitions and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                print("      consumer: %s" % msg.error())
            continue
        got[msg.partition()].append((msg.offset(), int(msg.value())))
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
    consumer.close()
    counts = {p: len(got[p]) for p in got}
    if len(done) < args.partitions:
        fail("read %s records per partition within %ds, the high watermarks are %s" % (counts, WAIT, ends))

    problems = []
    seen = {}
    for p in range(args.partitions):
        last = -1
        for o, i in got[p]:
            if i in seen:
                problems.append("value %06d at %d/%d and again at %d/%d" % (i, seen[i][0], seen[i][1], p, o))
            seen[i] = (p, o)
            if i <= last:
                problems.append("partition %d: value %06d at offset %d after value %06d" % (p, i, o, last))
            last = i
            if (p, o) not in delivered:
                problems.append("value %06d at %d/%d: no delivery report there" % (i, p, o))
            elif delivered[(p, o)] is not None and delivered[(p, o)] != i:
                problems.append("%d/%d holds value %06d, its delivery report was for %06d" % (p, o, i, delivered[(p, o)]))
    consumed_at = {(p, o) for p in got for o, _ in got[p]}
    for (p, o), i in sorted(delivered.items()):
        if (p, o) not in consumed_at:
            problems.append("delivered %s at %d/%d: not read back" % ("value %06d" % i if i is not None else "a value", p, o))
    missing = sorted(set(range(args.records)) - set(seen))
    if missing:
        problems.append("%d values never read back, first %s" % (len(missing), missing[:10]))
    if len(delivered) != args.records:
        problems.append("%d delivery reports, want %d" % (len(delivered), args.records))
    for line in problems[:20]:
        print("FAIL: " + line)
    if problems:
        print("%d problem(s); records per partition %s, high watermarks %s" % (len(problems), counts, ends))
        sys.exit(1)
    ok("%d values read back exactly once each, in order within each partition, at their delivered offsets (per partition %s)" % (args.records, counts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True, help="host:port,host:port,...")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ct = sub.add_parser("create-topic")
    ct.add_argument("--topic", required=True)
    ct.add_argument("--partitions", type=int, required=True)
    ct.add_argument("--replication-factor", type=int, default=3)
    ct.add_argument("--min-insync", type=int, default=2)
    wi = sub.add_parser("wait-isr")
    wi.add_argument("--topic", required=True)
    wi.add_argument("--replicas", type=int, default=3)
    ld = sub.add_parser("leader")
    ld.add_argument("--topic", required=True)
    ld.add_argument("--partition", type=int, default=0)
    pr = sub.add_parser("produce")
    pr.add_argument("--topic", required=True)
    pr.add_argument("--partitions", type=int, required=True)
    pr.add_argument("--records", type=int, required=True)
    pr.add_argument("--rate", type=float, required=True)
    pr.add_argument("--out", required=True)
    vf = sub.add_parser("verify")
    vf.add_argument("--topic", required=True)
    vf.add_argument("--partitions", type=int, required=True)
    vf.add_argument("--records", type=int, required=True)
    vf.add_argument("--delivered", required=True)
    args = ap.parse_args()
    {"create-topic": cmd_create_topic, "wait-isr": cmd_wait_isr, "leader": cmd_leader, "produce": cmd_produce, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    main()
