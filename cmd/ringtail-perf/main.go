// Command ringtail-perf drives any Kafka-compatible broker over the wire and reports throughput
// and latency. See docs/benchmarks.md.
//
//	ringtail-perf produce [flags]   closed loop (-c producers), pipelined (--linger …) or open loop (--rate)
//	ringtail-perf consume [flags]   read a topic from the start (or as --group)
//	ringtail-perf e2e --rate N      produce→consume latency with a tailing consumer
//	ringtail-perf bench [flags]     Ringtail side by side with kfake (what `make bench` runs)
//	ringtail-perf recovery [flags]  restart time with a large log, after kill -9 and SIGTERM
//	ringtail-perf plot FILE.json    redraw the plots from a JSON result
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ringtail/ringtail/perf"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: ringtail-perf produce|consume|e2e|bench|recovery [flags]
       ringtail-perf plot FILE.json   (redraw plots from a --json or bench result)
run "ringtail-perf <command> -h" for the flags of a command
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd {
	case "produce", "consume", "e2e":
		err = runOne(ctx, cmd, args)
	case "bench":
		err = runBench(ctx, args)
	case "recovery":
		err = runRecovery(ctx, args)
	case "plot":
		err = runPlot(args)
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringtail-perf %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func runOne(ctx context.Context, mode string, args []string) error {
	c := perf.DefaultConfig()
	c.Mode = mode
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	brokers := fs.String("brokers", strings.Join(c.Brokers, ","), "comma-separated seed brokers")
	fs.StringVar(&c.Topic, "topic", c.Topic, "topic")
	parts := fs.Int("partitions", int(c.Partitions), "partitions (for --create-topic)")
	fs.BoolVar(&c.CreateTopic, "create-topic", false, "create the topic first (existing is fine)")
	rf := fs.Int("replication-factor", int(c.ReplicationFactor), "replication factor (for --create-topic)")
	fs.IntVar(&c.Size, "s", c.Size, "record value size in bytes")
	fs.DurationVar(&c.Duration, "d", c.Duration, "measured duration")
	fs.DurationVar(&c.Warmup, "w", c.Warmup, "warm-up before measuring (not counted)")
	fs.Int64Var(&c.Count, "n", 0, "stop after this many measured messages (0: run for -d; with -d 0 only the count)")
	fs.StringVar(&c.Acks, "acks", c.Acks, "acks: 0, 1 or all")
	fs.StringVar(&c.Compression, "compression", c.Compression, "none, gzip, snappy, lz4 or zstd")
	fs.StringVar(&c.Keys, "keys", c.Keys, "record keys: none, random or sequential")
	fs.IntVar(&c.Concurrency, "c", c.Concurrency, "concurrent producers (closed loop: each waits for its ack)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "franz-go clients (connections) the producers share")
	fs.BoolVar(&c.Pipeline, "pipeline", false, "pipelined batching: producers hand records to the client without waiting (implied by --linger)")
	fs.DurationVar(&c.Linger, "linger", 0, "producer linger (pipelined)")
	bb := fs.Int("batch-bytes", int(c.BatchBytes), "max record batch bytes")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "produce requests in flight per broker connection")
	fs.IntVar(&c.MaxBuffered, "max-buffered", 0, "records a client buffers before Produce blocks (0: franz-go default)")
	fs.BoolVar(&c.Idempotent, "idempotent", false, "idempotent producer (acks=all only; caps in-flight at 5)")
	fs.IntVar(&c.Retries, "retries", 0, "produce retries per record (-1: unlimited); 0 reports every failure")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: offered msg/s, latency from scheduled send time")
	fs.StringVar(&c.Group, "group", "", "consume as a member of this consumer group")
	fs.IntVar(&c.BrokerPID, "broker-pid", 0, "report this local process's CPU as the broker's")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	plotOut := fs.String("plot", "", "write a latency plot (percentile curve and latency over time) to this PNG")
	quiet := fs.Bool("q", false, "no live progress line")
	fs.Parse(args)
	c.Brokers = strings.Split(*brokers, ",")
	c.Partitions, c.ReplicationFactor, c.BatchBytes = int32(*parts), int16(*rf), int32(*bb)
	if mode == "consume" && !isSet(fs, "d") {
		c.Duration = 0
	}
	if mode == "e2e" && c.Rate <= 0 {
		return fmt.Errorf("e2e needs --rate")
	}
	opts := perf.Options{}
	if !*quiet && perf.IsTerminal(os.Stderr) {
		opts.Progress = os.Stderr
	}
	res, err := perf.Run(ctx, c, opts)
	if err != nil {
		return err
	}
	perf.WriteText(os.Stdout, res)
	if *jsonOut != "" {
		if err := perf.WriteJSON(*jsonOut, res); err != nil {
			return err
		}
	}
	if *plotOut != "" {
		if err := perf.PlotResult(*plotOut, res); err != nil {
			return err
		}
	}
	if res.ErrorTotal > 0 {
		return fmt.Errorf("%d errors", res.ErrorTotal)
	}
	return nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
