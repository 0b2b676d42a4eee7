// Command ringtail is the Ringtail broker: `ringtail serve` runs a node; `ringtail version` says
// which build this is.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // profiles on --debug-listen only
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/internal/metrics"
	kafkanet "github.com/ringtail/ringtail/net"
	"github.com/ringtail/ringtail/vfs"
)

// version is set at build time by the Makefile (-X main.version=…).
var version = "dev"

const usage = `Ringtail: a Kafka-wire-compatible message broker whose acks mean "on disk".

Usage:
  ringtail serve [flags]   run a broker (ringtail serve --help lists the flags)
  ringtail group list|describe GROUP...   consumer groups: members, committed offsets, lag
  ringtail cluster status|add-node|remove-node   brokers, controller, Raft membership
  ringtail version         print the version
  ringtail help            this text
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		cfg, err := loadConfig(args[1:], os.Getenv)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ringtail: %v\n", err)
			return 2
		}
		if err := serve(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "ringtail: %v\n", err)
			return 1
		}
		return 0
	case "group":
		return runGroup(args[1:], os.Stdout)
	case "cluster":
		return runCluster(args[1:], os.Stdout)
	case "version", "--version", "-version":
		fmt.Printf("ringtail %s\n", version)
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "ringtail: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// defaultGCPercent is the broker's GOGC unless the environment sets one. Its live heap is a few
// MiB, so Go's default (100) collects about ten times a second under load; at 400 the seed
// workload measured 74.9K/80.7K msg/s against 64.9K/73.9K at 100, with lower broker CPU per
// message and p99 (two interleaved pairs, 2026-11-25), for a heap of a few tens of MiB.
const defaultGCPercent = 400

func serve(cfg *config) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	advHost, advPort, err := cfg.advertisedHostPort()
	if err != nil {
		return err
	}
	// Durably: a data directory created on the first start must not vanish in a power cut
	// with everything acknowledged into it.
	if err := vfs.MkdirAllDurable(vfs.OSFS{}, cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}

	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	// Metrics are observed only when they are served: the hot paths skip the clock otherwise.
	var m *metrics.Metrics
	var onWALCycle func(int, int64, time.Duration, error)
	var onRequest func(int16, time.Duration)
	if cfg.MetricsListen != "" {
		m = metrics.New()
		onWALCycle, onRequest = m.ObserveWALCycle, m.ObserveRequest
	}
	// A signal during the start (a cluster node waiting for a quorum or its registration) ends
	// the wait; after the start it begins the shutdown.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	startCtx, cancelStart := context.WithCancel(context.Background())
	startDone := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("signal during the start; stopping", "signal", sig.String())
			cancelStart()
			sigs <- sig // for the shutdown below, should the start complete after all
		case <-startDone:
		}
	}()
	var cluster *broker.ClusterConfig
	if cfg.Peers != nil {
		cluster = &broker.ClusterConfig{
			RaftAddr:          cfg.RaftAddr,
			Peers:             cfg.Peers,
			ReplicationAddr:   cfg.ReplicationListen,
			Rack:              cfg.Rack,
			SessionTimeout:    cfg.SessionTimeout,
			HeartbeatInterval: cfg.HeartbeatInterval,
			DisconnectGrace:   disconnectGrace(cfg.DisconnectGrace),
			ReplicaLagMax:     cfg.ReplicaLagMax,
			Join:              cfg.Join,
			NonVoting:         cfg.NonVoting,
		}
	}
	node, err := broker.OpenContext(startCtx, broker.Config{
		NodeID:                 cfg.NodeID,
		AdvertisedHost:         advHost,
		AdvertisedPort:         advPort,
		DataDir:                dataDir,
		AutoCreateTopics:       cfg.AutoCreateTopics,
		DefaultPartitions:      cfg.NumPartitions,
		MaxRequestBytes:        cfg.MaxRequestBytes,
		Durability:             cfg.Durability,
		WALIO:                  cfg.WALIO,
		SegmentBytes:           cfg.SegmentBytes,
		RetentionCheckInterval: cfg.RetentionCheck,
		OnWALCycle:             onWALCycle,
		OffsetsCompactRecords:  cfg.OffsetsCompact,
		Cluster:                cluster,
		OffsetsTopicPartitions: cfg.OffsetsPartitions,
		Logger:                 log,
	})
	if err != nil {
		if startCtx.Err() != nil {
			log.Info("stopped before the start completed", "err", err)
			return nil
		}
		return err
	}
	if m != nil {
		m.RegisterWAL(node.Storage())
		if cluster != nil {
			m.RegisterReplication(node)
		}
	}

	reg := kafkanet.NewRegistry()
	handlers := kafkanet.NewHandlers(node)
	handlers.SetFetchSessionCacheSlots(cfg.FetchSessionSlots)
	handlers.Register(reg)
	srv := kafkanet.NewServer(kafkanet.ServerConfig{
		Listen:          cfg.Listen,
		MaxRequestBytes: cfg.MaxRequestBytes,
		QueuedMaxBytes:  cfg.QueuedMaxBytes,
		MaxConnections:  cfg.MaxConnections,
		Multicore:       true,
		Logger:          log,
		OnRequest:       onRequest,
	}, reg)
	if m != nil {
		m.RegisterFetchSessions(handlers)
		m.RegisterConnections(srv)
	}
	if err := srv.Start(); err != nil {
		node.Close()
		return err
	}
	// The side endpoints listen before they are announced, so whoever reads the log line can
	// connect at once.
	if cfg.DebugListen != "" {
		// http.DefaultServeMux carries the pprof handlers and the metadata dump; it is served
		// on a separate, opt-in address so diagnostics never share a port with Kafka clients.
		http.Handle(debugMetadataPath, debugMetadataHandler(node.NodeID(), node.ControllerID, node.MetadataState))
		if err := serveHTTP(log, "debug", cfg.DebugListen, http.DefaultServeMux); err != nil {
			srv.Stop(context.Background())
			node.Close()
			return err
		}
	}
	if m != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		if err := serveHTTP(log, "metrics", cfg.MetricsListen, mux); err != nil {
			srv.Stop(context.Background())
			node.Close()
			return err
		}
	}
	log.Info("ringtail started", "version", version, "node_id", cfg.NodeID, "listen", srv.Addrs(),
		"advertised", fmt.Sprintf("%s:%d", advHost, advPort), "data_dir", dataDir)
	fmt.Fprintf(os.Stderr, "\nRingtail is listening on %v (data in %s).\nTry: kcat -b %s:%d -L\n\n", srv.Addrs(), dataDir, advHost, advPort)

	close(startDone)
	sig := <-sigs
	log.Info("shutting down", "signal", sig.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A cluster node hands its leaderships over while it still serves, so clients follow them.
	node.Shutdown()
	if err := srv.Stop(ctx); err != nil {
		log.Warn("stopping the network layer", "err", err)
	}
	if err := node.Close(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// lockDataDir takes an exclusive lock on the data directory so that a second broker started on
// it by mistake fails at once instead of interleaving writes with the first. The lock is an
// flock on data/.lock: the kernel releases it when the process dies, kill -9 included.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another ringtail process (lock %s)", dir, path)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// serveHTTP binds addr, then serves handler on it in the background and logs the endpoint: a
// port that cannot be bound is an error at start, not a log line later.
func serveHTTP(log *slog.Logger, what, addr string, handler http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s endpoint: %w", what, err)
	}
	log.Info(what+" endpoint", "addr", l.Addr().String())
	go func() {
		if err := http.Serve(l, handler); err != nil {
			log.Error(what+" endpoint stopped", "err", err)
		}
	}()
	return nil
}

// disconnectGrace is --disconnect-grace as the broker takes it: 0 (off) is negative there,
// where 0 means the default.
func disconnectGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
