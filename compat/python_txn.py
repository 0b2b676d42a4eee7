#!/usr/bin/python3
"""confluent-kafka-python (librdkafka) transaction checks against a running broker.

Run by compat/run.sh with Debian's /usr/bin/python3 (python3-confluent-kafka), one check per call;
the helpers (Check, common_conf, ...) are python_compat.py's:

  python_txn.py --broker 127.0.0.1:9092 txn
  python_txn.py --broker 127.0.0.1:9092 send-offsets
  python_txn.py --broker 127.0.0.1:9092 produce-txns --topic T --out-dir DIR

txn           a transactional Producer (transactional.id, init_transactions) writes three
              transactions to a fresh 3-partition topic: committed, aborted, committed (the aborted
              one sits between committed records in every partition). An assign()-based Consumer
              with isolation.level=read_committed reads to the end of every partition and must see
              exactly the committed values, in produce order per partition; one with
              read_uncommitted must see the aborted values too. Then an open (flushed, not
              committed) transaction: read_committed reaches the end without its records (the last
              stable offset), read_uncommitted reads them, and after the commit read_committed
              does too. A second Producer with the same
              transactional.id fences the first: the first's next transaction fails fatally.
send-offsets  consume-transform-produce: a subscribe() group consumer (read_committed, no auto
              commit) on topic A, a transactional Producer writing each record transformed to
              topic B, the consumer's positions committed with send_offsets_to_transaction in the
              same transaction. One transaction is aborted and the consumer rewound to the
              batch's first offsets, as an exactly-once application does. Afterwards B under
              read_committed holds every A record exactly once, read_uncommitted also holds the
              aborted copies, and the group's committed offsets (OffsetFetch) are A's end offsets.
produce-txns  the helper for the kcat check: writes committed, aborted and committed transactions
              of distinct values to a fresh 2-partition topic and the expected values to
              DIR/committed (what read_committed must return) and DIR/all (read_uncommitted).

Exit status 0 when every assertion holds; otherwise each failed assertion is printed.
"""

import os
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from python_compat import Check, check_parser, client_errors, common_conf, create_topic, report_client_errors, run_check, wait_topic

TXN_PARTITIONS = 3


def make_topic(c, admin, topic, partitions):
    err = create_topic(admin, topic, partitions)
    if err is not None or wait_topic(admin, topic, partitions) is None:
        c.fail("create topic %s with %d partitions: %s" % (topic, partitions, err or "not listed"))
        return False
    c.ok("topic %s created with %d partitions" % (topic, partitions))
    return True


def txn_producer(broker, txn_id, errs):
    conf = client_errors(common_conf(broker), errs)
    # lz4: transactional batches are compressed like any other; the broker must still find their
    # producer id, epoch and transactional flag.
    conf.update({"transactional.id": txn_id, "transaction.timeout.ms": 60000, "message.timeout.ms": 30000, "linger.ms": 5, "compression.type": "lz4"})
    return Producer(conf)


def produce_all(producer, topic, recs):
    """recs: [(partition, value)]; BufferError means the queue is full: serve it and retry."""
    for part, value in recs:
        while True:
            try:
                producer.produce(topic, value=value, partition=part)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)


def run_txn(c, producer, what, topic, recs, commit):
    """One transaction writing recs; commit or abort. Returns True when the client reports success."""
    try:
        producer.begin_transaction()
        produce_all(producer, topic, recs)
        if commit:
            producer.commit_transaction(30)
        else:
            # Flush first so the aborted records really are in the log: abort_transaction would
            # otherwise purge what is still queued and the read_uncommitted check would prove nothing.
            left = producer.flush(30)
            c.expect(left == 0, "%s: flushed before the abort (%d left)" % (what, left))
            producer.abort_transaction(30)
    except KafkaException as e:
        c.fail("%s: %s" % (what, e.args[0]))
        return False
    c.ok("%s: %d records, %s" % (what, len(recs), "committed" if commit else "aborted"))
    return True


def three_txns(c, producer, topic, partitions, n, tag):
    """Committed, aborted, committed transactions; every one writes to every partition, so the
    aborted records lie between committed ones everywhere. Returns (committed, all) as
    {partition: [values in produce order]}."""
    committed = {p: [] for p in range(partitions)}
    every = {p: [] for p in range(partitions)}
    plan = [("c", 0, n // 2, True), ("a", n // 2, n // 2 + max(n // 4, partitions), False), ("c", n, n + n // 2, True)]
    for i, (kind, lo, hi, commit) in enumerate(plan):
        recs = [(k % partitions, ("%s-%s%06d" % (tag, kind, k)).encode()) for k in range(lo, hi)]
        if not run_txn(c, producer, "transaction %d" % (i + 1), topic, recs, commit):
            return None, None
        for p, v in recs:
            every[p].append(v)
            if commit:
                committed[p].append(v)
    return committed, every


def read_to_end(c, broker, topic, partitions, isolation, errs):
    """assign()-based read of every partition from the beginning until EOF on all of them.
    Returns {partition: [values]} or None."""
    conf = client_errors(common_conf(broker), errs)
    conf.update(
        {
            "group.id": "compat-py-txn-unused",  # required by the client; no subscribe, no commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            "auto.offset.reset": "error",
        }
    )
    consumer = Consumer(conf)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    eof = set()
    errors = []
    deadline = time.time() + 30
    while time.time() < deadline and len(eof) < partitions:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
            else:
                errors.append(msg.error())
            continue
        eof.discard(msg.partition())
        got[msg.partition()].append(msg.value())
    consumer.close()
    c.expect(not errors, "%s consumer of %s: no errors (%s)" % (isolation, topic, errors[:3] or "none"))
    if not c.expect(len(eof) == partitions, "%s consumer reached the end of all %d partitions of %s" % (isolation, partitions, topic)):
        return None
    return got


def compare(c, what, got, want):
    for p in sorted(want):
        if got[p] != want[p]:
            extra = [v for v in got[p] if v not in set(want[p])]
            print("      partition %d: read %d values, want %d; unexpected %s; missing %s" % (p, len(got[p]), len(want[p]), extra[:3], [v for v in want[p] if v not in set(got[p])][:3]))
    total = sum(len(v) for v in want.values())
    return c.expect(got == want, "%s: exactly the %d expected values, in produce order per partition" % (what, total))


def check_txn(args):
    c = Check()
    errs = []
    topic = "compat-py-txn-%s" % args.run_id
    txn_id = "compat-py-txn-%s" % args.run_id
    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    if not make_topic(c, admin, topic, TXN_PARTITIONS):
        return c

    producer = txn_producer(args.broker, txn_id, errs)
    try:
        producer.init_transactions(30)
        c.ok("init_transactions (FindCoordinator, InitProducerId with transactional.id %s)" % txn_id)
    except KafkaException as e:
        c.fail("init_transactions: %s" % e.args[0])
        return c
    committed, every = three_txns(c, producer, topic, TXN_PARTITIONS, args.records, "py")
    if committed is None:
        return c

    got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_committed", errs)
    if got is not None:
        compare(c, "read_committed sees only the committed transactions", got, committed)
    got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_uncommitted", errs)
    if got is not None:
        compare(c, "read_uncommitted sees the aborted transaction too", got, every)

    # An open transaction: its records are in the log (flushed) but above the last stable offset,
    # so a read_committed consumer reaches the end of every partition without them (librdkafka's
    # end is the LSO there) while read_uncommitted reads them; after the commit both do.
    opened = [(k % TXN_PARTITIONS, b"py-o%06d" % k) for k in range(2 * TXN_PARTITIONS)]
    try:
        producer.begin_transaction()
        produce_all(producer, topic, opened)
        left = producer.flush(30)
        c.expect(left == 0, "open transaction: %d records flushed, not committed (%d left)" % (len(opened), left))
    except KafkaException as e:
        c.fail("open transaction: %s" % e.args[0])
        return c
    got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_committed", errs)
    if got is not None:
        compare(c, "read_committed stops at the last stable offset, before the open transaction", got, committed)
    for p, v in opened:
        every[p].append(v)
    got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_uncommitted", errs)
    if got is not None:
        compare(c, "read_uncommitted reads the open transaction's records", got, every)
    try:
        producer.commit_transaction(30)
    except KafkaException as e:
        c.fail("commit of the open transaction: %s" % e.args[0])
        return c
    for p, v in opened:
        committed[p].append(v)
    got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_committed", errs)
    if got is not None:
        compare(c, "after its commit, read_committed reads the once-open transaction", got, committed)

    # Fencing: a new producer with the same transactional.id bumps the epoch; the old one's next
    # transaction must fail with a fatal error (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH).
    producer2 = txn_producer(args.broker, txn_id, errs)
    try:
        producer2.init_transactions(30)
        c.ok("a second producer with the same transactional.id: init_transactions")
    except KafkaException as e:
        c.fail("second init_transactions: %s" % e.args[0])
        return c
    fenced = None
    try:
        producer.begin_transaction()
        produce_all(producer, topic, [(0, b"zombie")])
        producer.commit_transaction(30)
    except KafkaException as e:
        fenced = e.args[0]
    c.expect(
        fenced is not None and (fenced.fatal() or fenced.code() in (KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError.PRODUCER_FENCED)),
        "the first (fenced) producer cannot commit: %s" % fenced,
    )
    errs[:] = [e for e in errs if not e.fatal()]  # the fenced producer's fatal error is expected
    if run_txn(c, producer2, "the new producer's transaction", topic, [(0, b"py-after-fence")], True):
        committed[0].append(b"py-after-fence")
        got = read_to_end(c, args.broker, topic, TXN_PARTITIONS, "read_committed", errs)
        if got is not None:
            compare(c, "after fencing, read_committed sees the new producer's record and not the zombie's", got, committed)
    report_client_errors(c, errs)
    return c


def check_send_offsets(args):
    c = Check()
    errs = []
    src = "compat-py-eos-in-%s" % args.run_id
    dst = "compat-py-eos-out-%s" % args.run_id
    group = "compat-py-eos-%s" % args.run_id
    n = args.records
    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    if not (make_topic(c, admin, src, TXN_PARTITIONS) and make_topic(c, admin, dst, TXN_PARTITIONS)):
        return c

    # The input: plain idempotent produce, record i to partition i % 3.
    pconf = client_errors(common_conf(args.broker), errs)
    pconf.update({"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    plain = Producer(pconf)
    produce_all(plain, src, [(i % TXN_PARTITIONS, b"e%06d" % i) for i in range(n)])
    left = plain.flush(30)
    if not c.expect(left == 0, "produced %d input records to %s (%d undelivered)" % (n, src, left)):
        return c
    ends = {p: len(range(p, n, TXN_PARTITIONS)) for p in range(TXN_PARTITIONS)}

    cconf = client_errors(common_conf(args.broker), errs)
    cconf.update(
        {
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer = Consumer(cconf)
    consumer.subscribe([src])
    producer = txn_producer(args.broker, "compat-py-eos-" + args.run_id, errs)
    try:
        producer.init_transactions(30)
    except KafkaException as e:
        c.fail("init_transactions: %s" % e.args[0])
        return c

    batches = 0
    aborted = 0
    aborted_values = 0
    consume_errors = []
    deadline = time.time() + 60
    positions = {}
    while time.time() < deadline:
        msgs = consumer.consume(num_messages=100, timeout=0.5)
        batch = []
        for m in msgs:
            if m.error():
                consume_errors.append(m.error())
            else:
                batch.append(m)
        if batch:
            first = {}
            for m in batch:
                first.setdefault(m.partition(), m.offset())
            abort = batches == 1 and aborted == 0  # the second batch is aborted once, then redone
            try:
                producer.begin_transaction()
                produce_all(producer, dst, [(m.partition(), b"t-" + m.value()) for m in batch])
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
                if abort:
                    # The aborted copies reach the log first: read_uncommitted must show them.
                    left = producer.flush(30)
                    c.expect(left == 0, "the transaction to abort flushed (%d left)" % left)
                    producer.abort_transaction(30)
                else:
                    producer.commit_transaction(30)
            except KafkaException as e:
                c.fail("transaction %d: %s" % (batches + 1, e.args[0]))
                break
            if abort:
                aborted += 1
                aborted_values += len(batch)
                # Rewind to the batch, as an exactly-once application does after an abort.
                for p, off in first.items():
                    consumer.seek(TopicPartition(src, p, off))
            else:
                batches += 1
                for m in batch:
                    positions[m.partition()] = m.offset() + 1
        if positions == ends:
            break
    c.expect(positions == ends, "the loop processed every input record: positions %s, want %s (%d transactions committed, %d aborted)" % (positions, ends, batches, aborted))
    c.expect(aborted == 1, "one transaction (of %d records) was aborted and its batch redone" % aborted_values)
    c.expect(not consume_errors, "group consumer: no errors (%s)" % (consume_errors[:3] or "none"))
    try:
        committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(src, p) for p in range(TXN_PARTITIONS)], timeout=10)}
        c.expect(committed == ends, "the group's committed offsets (OffsetFetch after TxnOffsetCommit) %s equal the input's end offsets %s" % (committed, ends))
    except KafkaException as e:
        c.fail("committed(): %s" % e)
    consumer.close()

    want = {p: [b"t-e%06d" % i for i in range(p, n, TXN_PARTITIONS)] for p in range(TXN_PARTITIONS)}
    got = read_to_end(c, args.broker, dst, TXN_PARTITIONS, "read_committed", errs)
    if got is not None:
        compare(c, "the output under read_committed holds every input record exactly once", got, want)
    got = read_to_end(c, args.broker, dst, TXN_PARTITIONS, "read_uncommitted", errs)
    if got is not None:
        total = sum(len(v) for v in got.values())
        c.expect(total == n + aborted_values, "the output under read_uncommitted also holds the %d aborted copies (%d records, want %d)" % (aborted_values, total, n + aborted_values))
    report_client_errors(c, errs)
    return c


def check_produce_txns(args):
    c = Check()
    errs = []
    admin = AdminClient(client_errors(common_conf(args.broker), errs))
    if not make_topic(c, admin, args.topic, 2):
        return c
    producer = txn_producer(args.broker, args.topic, errs)
    try:
        producer.init_transactions(30)
    except KafkaException as e:
        c.fail("init_transactions: %s" % e.args[0])
        return c
    committed, every = three_txns(c, producer, args.topic, 2, args.records, "kcat")
    if committed is None:
        return c
    for name, vals in (("committed", committed), ("all", every)):
        with open(os.path.join(args.out_dir, name), "w") as f:
            for p in sorted(vals):
                for v in vals[p]:
                    f.write("%d\t%s\n" % (p, v.decode()))
    report_client_errors(c, errs)
    return c


def main():
    ap, sub = check_parser(__doc__)
    sub.add_parser("txn")
    sub.add_parser("send-offsets")
    pt = sub.add_parser("produce-txns")
    pt.add_argument("--topic", required=True)
    pt.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    run_check({"txn": check_txn, "send-offsets": check_send_offsets, "produce-txns": check_produce_txns}, args)


if __name__ == "__main__":
    main()
