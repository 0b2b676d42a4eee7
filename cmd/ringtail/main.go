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

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/internal/metrics"
	kafkanet "github.com/ringtail/ringtail/net"
	"github.com/ringtail/ringtail/vfs"
)

// version is set at build time by the Makefile (-X main.version=…).
var version = "dev"

const usage = `Ringtail: a Kafka-wire-compatible message broker whose acks mean "on disk".

Usage:
  ringtail serve [flags]   run a broker (ringtail serve --help lists the flags)
  ringtail topic create|list|describe|alter|delete   topics: partitions, replicas, configs, offsets
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
		if err := serve(cfg, args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "ringtail: %v\n", err)
			return 1
		}
		return 0
	case "topic":
		return runTopic(args[1:], os.Stdout)
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

func serve(cfg *config, args []string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	log := newLogger(os.Stderr, cfg.LogFormat, level)
	if cfg.OffsetsCompact != 0 {
		log.Warn("--offsets-compact-records is ignored: the log cleaner compacts __consumer_offsets (--log-cleaner-*)")
	}
	notify := newNotifier(log)
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
	var onCommittedAppend func(local, replication time.Duration)
	if cfg.MetricsListen != "" {
		m = metrics.New()
		onWALCycle, onRequest, onCommittedAppend = m.ObserveWALCycle, m.ObserveRequest, m.ObserveCommittedAppend
	}
	// A signal during the start (a cluster node waiting for a quorum or its registration) ends
	// the wait; after the start it begins the shutdown.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// SIGHUP is caught from the start (Go's default would end the process): one that comes
	// during a long recovery is applied once the broker serves.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	startCtx, cancelStart := context.WithCancel(context.Background())
	startDone := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("signal during the start; stopping", "signal", sig.String())
			notify.send(daemon.SdNotifyStopping, "STATUS=stopping before the start completed")
			cancelStart()
			sigs <- sig // for the shutdown below, should the start complete after all
		case <-startDone:
		}
	}()
	var cluster *broker.ClusterConfig
	starting := "recovering: replaying the write-ahead log"
	if cfg.Peers != nil {
		starting = "recovering: replaying the write-ahead log, joining the metadata cluster"
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
	opened := make(chan struct{})
	go notify.extendStart(opened, starting)
	node, err := broker.OpenContext(startCtx, broker.Config{
		NodeID:                     cfg.NodeID,
		AdvertisedHost:             advHost,
		AdvertisedPort:             advPort,
		DataDir:                    dataDir,
		AutoCreateTopics:           cfg.AutoCreateTopics,
		DefaultPartitions:          cfg.NumPartitions,
		MaxRequestBytes:            cfg.MaxRequestBytes,
		Durability:                 cfg.Durability,
		WALIO:                      cfg.WALIO,
		SegmentBytes:               cfg.SegmentBytes,
		RetentionCheckInterval:     cfg.RetentionCheck,
		LogCleanerDisabled:         !cfg.LogCleanerEnabled,
		LogCleanerInterval:         cfg.LogCleanerBackoff,
		LogCleanerIOBytesPerSecond: cfg.LogCleanerIoBytesPerSecond,
		OnWALCycle:                 onWALCycle,
		OnCommittedAppend:          onCommittedAppend,
		Cluster:                    cluster,
		OffsetsTopicPartitions:     cfg.OffsetsPartitions,
		TxnIDExpiration:            cfg.TransactionalIdExpiration,
		ProducerIDExpiration:       cfg.ProducerIdExpiration,
		Groups: group.Config{
			ConsumerSessionTimeout:    cfg.GroupConsumerSessionTimeout,
			ConsumerHeartbeatInterval: cfg.GroupConsumerHeartbeatInterval,
			ConsumerMaxSize:           cfg.GroupConsumerMaxSize,
			ConsumerAssignors:         cfg.GroupConsumerAssignors,
		},
		Logger: log,
	})
	close(opened)
	if err != nil {
		if startCtx.Err() != nil {
			log.Info("stopped before the start completed", "err", err)
			return nil
		}
		return err
	}
	if m != nil {
		m.RegisterWAL(node.Storage())
		m.RegisterCleaner(node.Storage())
		m.RegisterLeadership(node)
		if cluster != nil {
			m.RegisterReplication(node)
		}
	}

	reg := kafkanet.NewRegistry()
	handlers := kafkanet.NewHandlers(node)
	handlers.SetFetchSessionCacheSlots(cfg.MaxIncrementalFetchSessionCacheSlots)
	handlers.Register(reg)
	srv := kafkanet.NewServer(kafkanet.ServerConfig{
		Listen:          cfg.Listen,
		MaxRequestBytes: cfg.MaxRequestBytes,
		QueuedMaxBytes:  cfg.QueuedMaxRequestBytes,
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
		if os.Getenv(faultInjectionEnv) == "1" {
			registerFaultHandlers(http.DefaultServeMux, log, node.Storage())
		}
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
	// Under systemd, READY=1 waits until every listener has answered a request of our own,
	// and the watchdog pings only while the event loops, the WAL writer and the metadata
	// follower make progress.
	var wd *watchdog
	if notify.on {
		if wd, err = startWatchdog(startCtx, notify, log, srv.Addrs(), node, cluster != nil); err != nil {
			srv.Stop(context.Background())
			node.Close()
			if startCtx.Err() != nil {
				log.Info("stopped before the start completed", "err", err)
				return nil
			}
			return err
		}
	}
	log.Info("ringtail started", "version", version, "node_id", cfg.NodeID, "listen", srv.Addrs(),
		"advertised", fmt.Sprintf("%s:%d", advHost, advPort), "data_dir", dataDir)
	if !notify.on {
		fmt.Fprintf(os.Stderr, "\nRingtail is listening on %v (data in %s).\nTry: kcat -b %s:%d -L\n\n", srv.Addrs(), dataDir, advHost, advPort)
	}

	close(startDone)
	var sig os.Signal
	var failure error
	for sig == nil && failure == nil {
		select {
		case sig = <-sigs:
		case <-hups:
			reload(log, level, cfg, args, node, notify)
		case <-node.Failed():
			failure = node.Failure()
		}
	}
	return shutdown(log, notify, wd, sigs, sig, failure, node, srv)
}

// shutdownNetTimeout bounds stopping the Kafka listener: closing its connections and waiting
// for their request goroutines. shutdownDrainTimeout bounds the wait for requests in flight
// before that: a produce waits for one WAL sync, a fetch for at most its max wait (franz-go's
// default is 5 s, librdkafka's 500 ms).
const (
	shutdownNetTimeout   = 10 * time.Second
	shutdownDrainTimeout = 5 * time.Second
)

// shutdown is the controlled stop after the first SIGTERM or SIGINT, or after a cluster node's
// storage failure: tell systemd, hand the leaderships away while still serving (a cluster),
// stop the listener, close the node (a last sync and checkpoint of every partition), exit 0 —
// after a storage failure with an error (status 1), for systemd's Restart=on-failure and the
// operator: the node recovers from its WAL and follows once the disk is healthy. A second
// signal meanwhile exits at once: what was acknowledged is on disk already, and the next start
// replays the WAL.
func shutdown(log *slog.Logger, notify *notifier, wd *watchdog, sigs chan os.Signal, sig os.Signal, failure error,
	node *broker.Broker, srv *kafkanet.Server) error {
	start := time.Now()
	if failure != nil {
		log.Error("shutting down after a storage failure (restart once the disk is healthy; the node recovers from its WAL and follows)", "err", failure)
		notify.send(daemon.SdNotifyStopping, "STATUS=stopping after a storage failure: moving leaderships away")
	} else {
		log.Info("shutting down", "signal", sig.String())
		notify.send(daemon.SdNotifyStopping, "STATUS=stopping: moving leaderships away")
	}
	if wd != nil {
		wd.Stop()
	}
	go func() {
		sig := <-sigs
		log.Warn("second signal during the shutdown: exiting at once", "signal", sig.String())
		os.Exit(exitSecondSignal)
	}()
	// A cluster node hands its leaderships over while it still serves, so clients follow them.
	node.Shutdown()
	// Requests already read are answered (a produce's WAL sync, a fetch's long poll); no new
	// one is read. What is still open after shutdownDrainTimeout is dropped with its connection,
	// and the client retries elsewhere.
	notify.setStatus("stopping: answering requests in flight")
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), shutdownDrainTimeout)
	if err := srv.Drain(drainCtx); err != nil {
		log.Warn("stopping: requests left unanswered", "err", err)
	}
	cancelDrain()
	notify.setStatus("stopping: closing connections")
	ctx, cancel := context.WithTimeout(context.Background(), shutdownNetTimeout)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		log.Warn("stopping the network layer", "err", err)
	}
	notify.setStatus("stopping: syncing and checkpointing storage")
	if err := node.Close(); err != nil && failure == nil {
		return err
	}
	if failure != nil {
		return fmt.Errorf("stopped after a storage failure: %w", failure)
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// exitSecondSignal is the exit status after a second SIGTERM/SIGINT cut the shutdown short.
const exitSecondSignal = 1

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
