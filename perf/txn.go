package perf

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txnRecords is how many records one transaction of the txn workload carries.
const txnRecords = 100

// runTxn runs the txn workload: each of c.Concurrency transactional producers (a client of its
// own, its own transactional id) begins a transaction, sends txnRecords records over the topic's
// partitions, flushes them and commits, again and again. A "message" of the result is one
// committed transaction (its bytes are its records'), and its latency is the commit's: EndTxn,
// from the call to the answer, the markers written.
func runTxn(ctx context.Context, c Config, opts Options) (*Result, error) {
	run := time.Now().UnixNano()
	var cls []*kgo.Client
	for i := 0; i < c.Concurrency; i++ {
		o := append(c.producerOpts(), kgo.TransactionalID(fmt.Sprintf("ringtail-perf-%d-%d", run, i)),
			kgo.TransactionTimeout(time.Minute))
		cl, err := kgo.NewClient(o...)
		if err != nil {
			closeAll(cls)
			return nil, err
		}
		cls = append(cls, cl)
	}
	defer closeAll(cls)
	mk := newRecordMaker(&c)
	size := txnRecords * (c.Size + mk.keyLen())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := startMeasurement(ctx, &c, opts)
	w, rec := m.w, m.rec
	var workers sync.WaitGroup
	counts := make([]int64, c.Concurrency)
	for i, cl := range cls {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for !w.stopped.Load() {
				t0 := time.Now()
				commit, err := oneTxn(rctx, cl, mk)
				done := time.Now()
				if err != nil {
					if w.in(done) || w.in(t0) {
						rec.RecordError(ErrorName(err))
					}
					if rctx.Err() != nil {
						return
					}
					continue
				}
				if !w.in(done) {
					continue
				}
				rec.Record(commit, size)
				counts[i]++
			}
		}()
	}
	<-w.done
	ok := drain(&workers, drainTimeout, cancel)
	res := m.result(&c, opts)
	res.Fairness = ComputeFairness(counts)
	if !ok {
		res.Notes = append(res.Notes, "producers did not finish within the drain timeout; open transactions were canceled")
	}
	return res, nil
}

// oneTxn runs one transaction of txnRecords records and commits it, and returns how long the
// commit took; a failed send aborts it.
func oneTxn(ctx context.Context, cl *kgo.Client, mk *recordMaker) (time.Duration, error) {
	if err := cl.BeginTransaction(); err != nil {
		return 0, err
	}
	var mu sync.Mutex
	var sendErr error
	for range txnRecords {
		cl.Produce(ctx, mk.make(mk.value), func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				sendErr = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		sendErr = err
	}
	commit := kgo.TryCommit
	if sendErr != nil {
		commit = kgo.TryAbort
	}
	t := time.Now()
	if err := cl.EndTransaction(ctx, commit); err != nil {
		return 0, err
	}
	return time.Since(t), sendErr
}
