package perf

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/test/cluster"
)

// The recovery workload: how long a restart takes as the log grows. One broker process builds a
// log of RecoveryConfig.Bytes (incompressible 1 KiB records, large batches, acks=1), then is
// stopped, by kill -9 (after writing WriteBeforeKill more) and by SIGTERM, Rounds times each,
// and started again on the same data directory. What is measured is the time from starting the process to its Kafka port answering
// ApiVersions (polled every 20 ms: cluster.Poll), and the engine's own recovery time and path from
// its log. A measurement: nothing is asserted.

// RecoveryConfig says how big a log to build and how often to restart it.
type RecoveryConfig struct {
	Bin         string // the ringtail binary
	Dir         string // parent of the data directory (removed afterwards unless Keep)
	Bytes       int64  // log size to build (record values)
	Partitions  int32
	RecordBytes int      // record value size; default 1 KiB
	BatchBytes  int      // producer batch size; default 16 KiB (the number of batches is what recovery reads)
	Rounds      int      // restarts per kind
	Args        []string // further serve flags
	Keep        bool     // keep the data directory, and reuse one an earlier Keep run built with the same shape
	// WriteBeforeKill: bytes produced (not timed) before each kill -9, so the crash finds what a
	// crash under load finds: writes since the last checkpoint and since the last clean start.
	WriteBeforeKill int64
}

// RecoveryRestart is one measured restart.
type RecoveryRestart struct {
	After     string        `json:"after"` // "kill -9" or "SIGTERM"
	Ready     time.Duration `json:"ready"` // process start to ApiVersions answered
	EngineLog string        `json:"engine_log,omitempty"`
}

// RecoveryResult is the whole run.
type RecoveryResult struct {
	Bytes       int64             `json:"bytes"`
	DiskBytes   int64             `json:"disk_bytes"`
	Partitions  int32             `json:"partitions"`
	RecordBytes int               `json:"record_bytes"`
	BatchBytes  int               `json:"batch_bytes"`
	BuildTime   time.Duration     `json:"build_time"`
	Restarts    []RecoveryRestart `json:"restarts"`
}

const recoveryTopic = "recovery"

// RunRecovery builds the log and measures the restarts, printing as it goes to log.
func RunRecovery(ctx context.Context, rc RecoveryConfig, log io.Writer) (*RecoveryResult, error) {
	if rc.Partitions <= 0 {
		rc.Partitions = 4
	}
	if rc.RecordBytes <= 0 {
		rc.RecordBytes = 1 << 10
	}
	if rc.BatchBytes <= 0 {
		rc.BatchBytes = 16 << 10
	}
	if rc.Rounds <= 0 {
		rc.Rounds = 3
	}
	dataDir := filepath.Join(rc.Dir, "recovery-data")
	// built records that a whole log of this shape is in dataDir (written once the build ends).
	built := filepath.Join(rc.Dir, "recovery-built")
	shape := fmt.Sprintf("%d bytes, %d partitions, %d B records, %d B batches\n", rc.Bytes, rc.Partitions, rc.RecordBytes, rc.BatchBytes)
	reuse := false
	if rc.Keep {
		if b, err := os.ReadFile(built); err == nil && string(b) == shape {
			reuse = true
		} else {
			os.RemoveAll(dataDir)
			os.Remove(built)
		}
	} else {
		defer os.RemoveAll(dataDir)
	}
	b, err := cluster.NewBroker(cluster.BrokerConfig{Bin: rc.Bin, DataDir: dataDir, Args: rc.Args, ReadyTimeout: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	defer b.Kill()
	res := &RecoveryResult{Bytes: rc.Bytes, Partitions: rc.Partitions, RecordBytes: rc.RecordBytes, BatchBytes: rc.BatchBytes}
	if !reuse {
		start := time.Now()
		if err := buildLog(ctx, b.Addr(), rc); err != nil {
			return nil, fmt.Errorf("building the log: %w", err)
		}
		res.BuildTime = time.Since(start)
		if rc.Keep {
			if err := os.WriteFile(built, []byte(shape), 0o644); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(log, "recovery: built %.2f GiB in %d partitions (%d B records, %d B batches) in %s\n",
			float64(rc.Bytes)/(1<<30), rc.Partitions, rc.RecordBytes, rc.BatchBytes, res.BuildTime.Round(time.Second))
	}
	res.DiskBytes = dirBytes(dataDir)
	for i := 0; i < rc.Rounds; i++ {
		for _, kind := range []string{"kill -9", "SIGTERM"} {
			if kind == "kill -9" {
				if rc.WriteBeforeKill > 0 {
					more := rc
					more.Bytes = rc.WriteBeforeKill
					if err := buildLog(ctx, b.Addr(), more); err != nil {
						return res, fmt.Errorf("writing before the kill: %w", err)
					}
				}
				err = b.Kill()
			} else {
				err = b.Stop()
			}
			if err != nil {
				return res, err
			}
			from := b.LogLen()
			start := time.Now()
			if err := b.Start(ctx); err != nil {
				return res, err
			}
			r := RecoveryRestart{After: kind, Ready: time.Since(start), EngineLog: engineLine(b.Log()[from:])}
			res.Restarts = append(res.Restarts, r)
			fmt.Fprintf(log, "recovery: after %-7s ready in %7.3f s   %s\n", kind, r.Ready.Seconds(), r.EngineLog)
		}
	}
	return res, nil
}

var engineLineRE = regexp.MustCompile(`(recovery: [^"\n]*"( \S+=\S+)*|took=\S+)`)

// engineLine picks the engine's recovery path and time from a start's log.
func engineLine(log string) string {
	var parts []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "engine: recovered") || strings.Contains(l, "recovery: ") {
			for _, m := range engineLineRE.FindAllString(l, -1) {
				parts = append(parts, strings.TrimSuffix(m, `"`))
			}
		}
	}
	return strings.Join(parts, " ")
}

// buildLog produces rc.Bytes of incompressible records to the recovery topic.
func buildLog(ctx context.Context, addr string, rc RecoveryConfig) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(int32(rc.BatchBytes)), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedBytes(64<<20), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, rc.Partitions, 1, nil, recoveryTopic); err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		return err
	}
	pool := make([]byte, 64<<20)
	if _, err := rand.Read(pool); err != nil {
		return err
	}
	size := int64(rc.RecordBytes)
	errc := make(chan error, 1)
	var sent int64
	for i := int64(0); sent < rc.Bytes; i++ {
		off := (i * 4099) % (int64(len(pool)) - size)
		sent += size
		cl.Produce(ctx, &kgo.Record{Topic: recoveryTopic, Value: pool[off : off+size]}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
		select {
		case err := <-errc:
			return err
		default:
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	return nil
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// WriteRecoveryText prints the summary table: the median per kind.
func WriteRecoveryText(w io.Writer, r *RecoveryResult) {
	fmt.Fprintf(w, "\n== recovery: %.2f GiB of records (%.2f GiB on disk), %d partitions, %d B records in %d B batches ==\n",
		float64(r.Bytes)/(1<<30), float64(r.DiskBytes)/(1<<30), r.Partitions, r.RecordBytes, r.BatchBytes)
	for _, kind := range []string{"kill -9", "SIGTERM"} {
		var ds []time.Duration
		for _, x := range r.Restarts {
			if x.After == kind {
				ds = append(ds, x.Ready)
			}
		}
		if len(ds) == 0 {
			continue
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Fprintf(w, "after %-7s  ready median %7.3f s  min %7.3f s  max %7.3f s  (%d restarts)\n",
			kind, ds[len(ds)/2].Seconds(), ds[0].Seconds(), ds[len(ds)-1].Seconds(), len(ds))
	}
}
