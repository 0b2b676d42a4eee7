// Command franzgo is a franz-go producer through a leader change, run by compat/cluster.sh:
//
//	franzgo --brokers h:p,h:p,h:p --topic T --partitions P --records N --rate R --out FILE
//
// A kgo client with its defaults (idempotent, acks=all) writes the values 000000..N-1 (value i to
// partition i % P) to the existing topic T at about R a second and appends "i partition offset"
// to FILE as each record's promise reports it produced. compat/cluster.sh kill -9s the leader of
// partition 0 once a third are in. The application never produces a value twice: a record whose
// promise reports an error fails the check. What kgo logged at warn and above while it retried
// (its view of the leader change) is counted and printed. Exit status 0 only when all N values
// were delivered.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// countingLogger counts kgo's log lines at warn and above by message and error.
type countingLogger struct {
	mu    sync.Mutex
	lines map[string]int
}

func (l *countingLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l *countingLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	for i := 0; i+1 < len(keyvals); i += 2 {
		if keyvals[i] == "err" {
			msg += fmt.Sprintf(" (err: %v)", keyvals[i+1])
		}
	}
	l.mu.Lock()
	l.lines[level.String()+": "+msg]++
	l.mu.Unlock()
}

func main() {
	brokers := flag.String("brokers", "", "comma-separated seed brokers")
	topic := flag.String("topic", "", "topic to produce to (it must exist)")
	partitions := flag.Int("partitions", 0, "partitions of the topic: value i goes to i % partitions")
	records := flag.Int("records", 0, "values to produce")
	rate := flag.Float64("rate", 200, "values a second")
	outPath := flag.String("out", "", "file for the delivered values")
	flag.Parse()
	if *brokers == "" || *topic == "" || *partitions <= 0 || *records <= 0 || *outPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*brokers, *topic, int32(*partitions), *records, *rate, *outPath); err != nil {
		fmt.Printf("FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run(brokers, topic string, partitions int32, records int, rate float64, outPath string) error {
	f, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer f.Close()
	out := bufio.NewWriter(f)

	logger := &countingLogger{lines: map[string]int{}}
	// kgo's defaults ride through a leader change of ~10 s: acks=all, idempotent writes,
	// unlimited record retries with no delivery timeout, and a metadata refresh on
	// NOT_LEADER_OR_FOLLOWER or a lost connection. Nothing is set for it here.
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.WithLogger(logger),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	var (
		mu        sync.Mutex
		delivered int
		failed    []string
	)
	start := time.Now()
	for i := 0; i < records; i++ {
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		r := &kgo.Record{
			Key:       fmt.Appendf(nil, "k%06d", i),
			Value:     fmt.Appendf(nil, "%06d", i),
			Partition: int32(i) % partitions,
		}
		// Promises run serially, per partition in produce order.
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Sprintf("value %s: %v", r.Value, err))
				return
			}
			delivered++
			fmt.Fprintf(out, "%d %d %d\n", i, r.Partition, r.Offset)
			out.Flush()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	flushErr := cl.Flush(ctx)

	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("      produced %d values in %.1fs: %d delivered, %d failed\n", records, time.Since(start).Seconds(), delivered, len(failed))
	var logged []string
	for msg, n := range logger.lines {
		logged = append(logged, fmt.Sprintf("      kgo logged %dx: %s", n, msg))
	}
	sort.Strings(logged)
	for _, l := range logged {
		fmt.Println(l)
	}
	switch {
	case flushErr != nil:
		return fmt.Errorf("flush: %v (%d of %d delivered)", flushErr, delivered, records)
	case len(failed) > 0:
		return fmt.Errorf("%d records failed, first %s", len(failed), failed[0])
	case delivered != records:
		return fmt.Errorf("%d of %d values delivered", delivered, records)
	}
	fmt.Printf("ok:   all %d values delivered with no record failed; the leader change was retried inside kgo\n", records)
	return nil
}
