package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"

	"github.com/ringtail/ringtail/perf"
)

// runRecovery is `ringtail-perf recovery`: restart time after kill -9 and after SIGTERM with a
// log of --bytes (perf.RunRecovery).
func runRecovery(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("recovery", flag.ExitOnError)
	var rc perf.RecoveryConfig
	fs.StringVar(&rc.Bin, "ringtail", "bin/ringtail", "the ringtail binary")
	fs.StringVar(&rc.Dir, "dir", os.TempDir(), "parent of the data directory")
	size := fs.Float64("gib", 1, "log size to build, GiB of record values")
	parts := fs.Int("partitions", 4, "partitions of the topic")
	fs.IntVar(&rc.RecordBytes, "record-bytes", 1024, "record value size")
	fs.IntVar(&rc.BatchBytes, "batch-bytes", 16<<10, "producer batch size (recovery reads every batch header)")
	wbk := fs.Int("write-before-kill-mib", 64, "MiB produced (not timed) before each kill -9")
	fs.IntVar(&rc.Rounds, "rounds", 3, "restarts after each of kill -9 and SIGTERM")
	serveArgs := fs.String("serve-args", "", "further `ringtail serve` flags, space-separated")
	fs.BoolVar(&rc.Keep, "keep", false, "keep the data directory, and reuse a log built by an earlier --keep run")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	fs.Parse(args)
	rc.Bytes = int64(*size * (1 << 30))
	rc.WriteBeforeKill = int64(*wbk) << 20
	rc.Partitions = int32(*parts)
	rc.Args = strings.Fields(*serveArgs)
	res, err := perf.RunRecovery(ctx, rc, os.Stderr)
	if res != nil {
		perf.WriteRecoveryText(os.Stdout, res)
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}
