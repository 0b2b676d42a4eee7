package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/meta/controller"
	"github.com/ringtail/ringtail/meta/raftlog"
)

// config is everything `ringtail serve` can be told. Each setting comes, in rising precedence,
// from its default, the config file, a RINGTAIL_* environment variable, and a flag.
type config struct {
	Listen                               []string
	Advertised                           string
	DataDir                              string
	NodeID                               int32
	AutoCreateTopics                     bool
	NumPartitions                        int32
	Durability                           string
	WALIO                                string
	MaxRequestBytes                      int32
	QueuedMaxRequestBytes                int64 // queued.max.request.bytes; -1: no broker-wide bound
	MaxConnections                       int   // max.connections; 0: no limit
	MaxIncrementalFetchSessionCacheSlots int   // max.incremental.fetch.session.cache.slots
	SegmentBytes                         int64
	LogLevel                             string
	LogFormat                            string
	DebugListen                          string
	MetricsListen                        string
	RetentionCheck                       time.Duration
	LogCleanerEnabled                    bool
	LogCleanerBackoff                    time.Duration
	LogCleanerIoBytesPerSecond           int64
	OffsetsCompact                       int
	OffsetsPartitions                    int32

	// The consumer protocol's groups (KIP-848; Kafka's group.consumer.*).
	GroupConsumerSessionTimeout       time.Duration
	TransactionalIdExpiration         time.Duration
	ProducerIdExpiration              time.Duration
	GroupConsumerMinSessionTimeout    time.Duration
	GroupConsumerMaxSessionTimeout    time.Duration
	GroupConsumerHeartbeatInterval    time.Duration
	GroupConsumerMinHeartbeatInterval time.Duration
	GroupConsumerMaxHeartbeatInterval time.Duration
	GroupConsumerMaxSize              int // 0: no limit
	GroupConsumerAssignors            []string

	// A cluster (all empty: a single node).
	RaftAddr          string
	Peers             map[uint64]string
	ReplicationListen string
	Rack              string
	SessionTimeout    time.Duration
	ReplicaLagMax     time.Duration
	HeartbeatInterval time.Duration
	DisconnectGrace   time.Duration // 0: off
	Join, NonVoting   bool
}

// option is one setting: its name (flag name and config-file key), default, help and parser.
type option struct {
	name  string
	def   string
	help  string
	apply func(c *config, v string) error
}

var options = []option{
	{"listen", "127.0.0.1:9092", "host:port to accept Kafka clients on (repeatable; comma-separated in the file and env)", func(c *config, v string) error {
		c.Listen = nil
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("listen address %q: %w", a, err)
			}
			c.Listen = append(c.Listen, a)
		}
		if len(c.Listen) == 0 {
			return fmt.Errorf("no listen address")
		}
		return nil
	}},
	{"advertised", "", "host:port clients are told to connect to (default: the first listen address)", func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("advertised address %q: %w", v, err)
			}
		}
		c.Advertised = v
		return nil
	}},
	{"data-dir", "./data", "directory for the logs and metadata", func(c *config, v string) error {
		if v == "" {
			return fmt.Errorf("data-dir is empty")
		}
		c.DataDir = v
		return nil
	}},
	{"node-id", "1", "this broker's id", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("node-id %q: must be a non-negative integer", v)
		}
		c.NodeID = int32(n)
		return nil
	}},
	{"auto-create-topics", "true", "create a topic when a client produces to it or asks for its metadata", func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("auto-create-topics %q: must be true or false", v)
		}
		c.AutoCreateTopics = b
		return nil
	}},
	{"num-partitions", "1", "partition count of auto-created topics", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("num-partitions %q: must be a positive integer", v)
		}
		c.NumPartitions = int32(n)
		return nil
	}},
	{"durability", "fsync", "fsync: acknowledge after fdatasync; none: acknowledge after write (unsafe on power loss)", func(c *config, v string) error {
		if v != "fsync" && v != "none" {
			return fmt.Errorf("durability %q: must be fsync or none", v)
		}
		c.Durability = v
		return nil
	}},
	{"wal-io", "auto", "how the write-ahead log reaches the disk: auto (io_uring, else portable), uring, or portable (pwrite+fdatasync)", func(c *config, v string) error {
		switch v {
		case "auto", "uring", "portable":
			c.WALIO = v
			return nil
		}
		return fmt.Errorf("wal-io %q: must be auto, uring or portable", v)
	}},
	{"max-request-bytes", "104857600", "socket.request.max.bytes: larger frames are refused before they are read", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1024 {
			return fmt.Errorf("max-request-bytes %q: must be an integer of at least 1024", v)
		}
		c.MaxRequestBytes = int32(n)
		return nil
	}},
	{"queued-max-request-bytes", "-1", "queued.max.request.bytes: request bytes all connections together may hold (received, not yet answered) before the broker stops reading requests until some are answered; -1: no bound", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n == 0 {
			return fmt.Errorf("queued-max-request-bytes %q: must be a positive integer, or -1 for no bound", v)
		}
		c.QueuedMaxRequestBytes = n
		return nil
	}},
	{"max-connections", "0", "max.connections: client connections the broker keeps open at once; one more is closed at once with a log line; 0: no limit", func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("max-connections %q: must be a non-negative integer (0: no limit)", v)
		}
		c.MaxConnections = n
		return nil
	}},
	{"max-incremental-fetch-session-cache-slots", "1000", "fetch sessions (KIP-227) the broker keeps; when all are taken a new session replaces the least valuable evictable one or none; 0: every fetch is sessionless", func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("max-incremental-fetch-session-cache-slots %q: must be a non-negative integer", v)
		}
		c.MaxIncrementalFetchSessionCacheSlots = n
		return nil
	}},
	{"segment-bytes", "268435456", "roll a partition's log segment beyond this size", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("segment-bytes %q: must be an integer of at least 1 MiB", v)
		}
		c.SegmentBytes = n
		return nil
	}},
	{"debug-listen", "", "host:port for an HTTP endpoint with Go's pprof profiles under /debug/pprof/ and the metadata this node follows as JSON under /debug/ringtail/metadata (off when empty)", func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("debug-listen %q: %w", v, err)
			}
		}
		c.DebugListen = v
		return nil
	}},
	{"retention-check-interval", "5m", "how often segments past their topic's retention.ms / retention.bytes are deleted (log.retention.check.interval.ms)", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("retention-check-interval %q: must be a positive duration such as 5m or 30s", v)
		}
		c.RetentionCheck = d
		return nil
	}},
	{"log-cleaner-enabled", "true", "compact topics whose cleanup.policy includes compact, keeping the latest record per key (log.cleaner.enable); false: they only grow", func(c *config, v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("log-cleaner-enabled %q: must be true or false", v)
		}
		c.LogCleanerEnabled = on
		return nil
	}},
	{"log-cleaner-backoff", "15s", "how often the log cleaner looks for partitions to compact (log.cleaner.backoff.ms)", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("log-cleaner-backoff %q: must be a positive duration such as 15s", v)
		}
		c.LogCleanerBackoff = d
		return nil
	}},
	{"log-cleaner-io-bytes-per-second", "0", "bound on the log cleaner's reads plus writes, bytes per second (log.cleaner.io.max.bytes.per.second); 0: no bound", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("log-cleaner-io-bytes-per-second %q: must be a non-negative integer (0: no bound)", v)
		}
		c.LogCleanerIoBytesPerSecond = n
		return nil
	}},
	{"offsets-topic-partitions", "50", "partition count of __consumer_offsets when it is created (offsets.topic.num.partitions); each has its own group coordinator, and an existing topic keeps its count", func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > int64(broker.MaxPartitions) {
			return fmt.Errorf("offsets-topic-partitions %q: must be an integer from 1 to %d", v, broker.MaxPartitions)
		}
		c.OffsetsPartitions = int32(n)
		return nil
	}},
	{"offsets-compact-records", "0", "ignored (kept so that existing configurations still start): the log cleaner compacts __consumer_offsets, see the log-cleaner options", func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("offsets-compact-records %q: must be a non-negative integer (it is ignored)", v)
		}
		c.OffsetsCompact = n
		return nil
	}},
	durationOption("transactional-id-expiration", "168h", "a transactional id idle this long is forgotten, its state deleted from __transaction_state (transactional.id.expiration.ms)",
		func(c *config) *time.Duration { return &c.TransactionalIdExpiration }),
	durationOption("producer-id-expiration", "24h", "each partition forgets an idempotent or transactional producer whose last batch is this old (by its timestamp) and which has no transaction open: its duplicate detection ends and a compacted topic stops keeping its last batch (producer.id.expiration.ms); checked every retention-check-interval",
		func(c *config) *time.Duration { return &c.ProducerIdExpiration }),
	durationOption("group-consumer-session-timeout", "45s", "a consumer-protocol (KIP-848) member that sends no heartbeat for this long leaves its group (group.consumer.session.timeout.ms); within the min and max below",
		func(c *config) *time.Duration { return &c.GroupConsumerSessionTimeout }),
	durationOption("group-consumer-min-session-timeout", "45s", "the least group-consumer-session-timeout may be (group.consumer.min.session.timeout.ms)",
		func(c *config) *time.Duration { return &c.GroupConsumerMinSessionTimeout }),
	durationOption("group-consumer-max-session-timeout", "60s", "the most group-consumer-session-timeout may be (group.consumer.max.session.timeout.ms)",
		func(c *config) *time.Duration { return &c.GroupConsumerMaxSessionTimeout }),
	durationOption("group-consumer-heartbeat-interval", "5s", "how often consumer-protocol members are told to heartbeat (group.consumer.heartbeat.interval.ms); within the min and max below, less than the session timeout",
		func(c *config) *time.Duration { return &c.GroupConsumerHeartbeatInterval }),
	durationOption("group-consumer-min-heartbeat-interval", "5s", "the least group-consumer-heartbeat-interval may be (group.consumer.min.heartbeat.interval.ms)",
		func(c *config) *time.Duration { return &c.GroupConsumerMinHeartbeatInterval }),
	durationOption("group-consumer-max-heartbeat-interval", "15s", "the most group-consumer-heartbeat-interval may be (group.consumer.max.heartbeat.interval.ms)",
		func(c *config) *time.Duration { return &c.GroupConsumerMaxHeartbeatInterval }),
	{"group-consumer-max-size", "0", "members a consumer-protocol group may have; one more is refused with GROUP_MAX_SIZE_REACHED (group.consumer.max.size); 0: no limit", func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("group-consumer-max-size %q: must be a non-negative integer (0: no limit)", v)
		}
		c.GroupConsumerMaxSize = n
		return nil
	}},
	{"group-consumer-assignors", "uniform,range", "server-side assignors consumer-protocol members may name, comma-separated, the first the default (group.consumer.assignors; Kafka's class names UniformAssignor and RangeAssignor are accepted too)", func(c *config, v string) error {
		c.GroupConsumerAssignors = nil
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			// Kafka's config names the classes; the protocol names them uniform and range.
			switch a[strings.LastIndexByte(a, '.')+1:] {
			case "uniform", "UniformAssignor":
				a = group.AssignorUniform
			case "range", "RangeAssignor":
				a = group.AssignorRange
			default:
				return fmt.Errorf("group-consumer-assignors %q: %q is not an assignor; the assignors are uniform and range", v, a)
			}
			if !slices.Contains(c.GroupConsumerAssignors, a) {
				c.GroupConsumerAssignors = append(c.GroupConsumerAssignors, a)
			}
		}
		return nil
	}},
	{"metrics-listen", "", "host:port for an HTTP endpoint with Prometheus metrics under /metrics (off when empty)", func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("metrics-listen %q: %w", v, err)
			}
		}
		c.MetricsListen = v
		return nil
	}},
	{"peers", "", "the metadata cluster's voters, id@host:port of each one's --raft-addr, comma-separated, the same on every node (e.g. 1@10.0.0.1:9192,2@10.0.0.2:9192,3@10.0.0.3:9192); empty: a single node", func(c *config, v string) error {
		c.Peers = nil
		if v == "" {
			return nil
		}
		peers, err := raftlog.ParsePeers(v)
		if err != nil {
			return fmt.Errorf("peers %q: %w", v, err)
		}
		c.Peers = peers
		return nil
	}},
	{"raft-addr", "", "host:port this node's metadata (Raft) traffic listens on; with --peers, this node's entry there (it may never change)", func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("raft-addr %q: %w", v, err)
			}
		}
		c.RaftAddr = v
		return nil
	}},
	{"replication-listen", "", "host:port followers fetch partition data from (recorded in the cluster metadata; replication uses it)", func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("replication-listen %q: %w", v, err)
			}
		}
		c.ReplicationListen = v
		return nil
	}},
	{"join", "false", "this node joins a running cluster it was added to with `ringtail cluster add-node` (its id need not be in --peers)", func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("join %q: must be true or false", v)
		}
		c.Join = b
		return nil
	}},
	{"non-voting", "false", "with --join: this node was added as a non-voting member (it follows the metadata, its vote does not count)", func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("non-voting %q: must be true or false", v)
		}
		c.NonVoting = b
		return nil
	}},
	{"rack", "", "this node's rack: the replicas of a partition go to distinct racks where possible", func(c *config, v string) error {
		c.Rack = v
		return nil
	}},
	{"session-timeout", "9s", "a cluster node not heard from for this long is fenced and its leaderships move", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("session-timeout %q: must be a duration of at least 1s", v)
		}
		c.SessionTimeout = d
		return nil
	}},
	{"replica-lag-time-max", "10s", "a follower that has not caught up with its leader for this long leaves the ISR (Kafka's replica.lag.time.max.ms)", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond {
			return fmt.Errorf("replica-lag-time-max %q: must be a duration of at least 100ms", v)
		}
		c.ReplicaLagMax = d
		return nil
	}},
	{"heartbeat-interval", broker.DefaultHeartbeatInterval.String(), "how often a cluster node tells the controller it is alive; a new controller waits three intervals to hear from a node before fencing it", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond {
			return fmt.Errorf("heartbeat-interval %q: must be a duration of at least 100ms", v)
		}
		c.HeartbeatInterval = d
		return nil
	}},
	{"disconnect-grace", controller.DefaultDisconnectGrace.String(), "a cluster node whose heartbeat connection to the controller closed (its process died) is fenced this long after, unless it heartbeats again; 0: only the session timeout counts", func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("disconnect-grace %q: must be a duration, 0 or more", v)
		}
		c.DisconnectGrace = d
		return nil
	}},
	{"log-level", "info", "debug, info, warn or error", func(c *config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("log-level %q: must be debug, info, warn or error", v)
	}},
	{"log-format", "text", "text (key=value lines) or json (one object per line, for journald and log shippers)", func(c *config, v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("log-format %q: must be text or json", v)
		}
		c.LogFormat = v
		return nil
	}},
}

// durationOption is a setting holding a duration of at least a millisecond (Kafka's are in ms).
func durationOption(name, def, help string, field func(*config) *time.Duration) option {
	return option{name, def, help, func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			return fmt.Errorf("%s %q: must be a duration of at least 1ms, such as 45s", name, v)
		}
		*field(c) = d
		return nil
	}}
}

// envName is the environment variable for an option: data-dir -> RINGTAIL_DATA_DIR.
func envName(name string) string {
	return "RINGTAIL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// boolString is a flag that may stand alone (--join) or take true or false, kept as the string
// the option's parser reads.
type boolString struct{ s string }

func (b *boolString) String() string     { return b.s }
func (b *boolString) Set(v string) error { b.s = v; return nil }
func (b *boolString) IsBoolFlag() bool   { return true }

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// loadConfig resolves the configuration from args (the flags after `serve`), the environment and
// the config file named by --config or RINGTAIL_CONFIG.
func loadConfig(args []string, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("ringtail serve", flag.ContinueOnError)
	fs.Usage = func() { serveUsage(fs) }
	flagValues := make(map[string]*string)
	var listens listFlag
	for _, o := range options {
		if o.name == "listen" {
			fs.Var(&listens, o.name, o.help+" (default "+o.def+")")
			continue
		}
		if o.def == "true" || o.def == "false" {
			// A switch: --join alone means --join=true.
			v := &boolString{s: o.def}
			fs.Var(v, o.name, o.help+" (default "+o.def+")")
			flagValues[o.name] = &v.s
			continue
		}
		flagValues[o.name] = fs.String(o.name, o.def, o.help)
	}
	configFile := fs.String("config", getenv("RINGTAIL_CONFIG"), "config file of `key = value` lines with the flag names as keys")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	setByFlag := make(map[string]string)
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "listen" {
			setByFlag["listen"] = strings.Join(listens, ",")
		} else if p, ok := flagValues[f.Name]; ok {
			setByFlag[f.Name] = *p
		}
	})
	var fromFile map[string]string
	if *configFile != "" {
		var err error
		if fromFile, err = readConfigFile(*configFile); err != nil {
			return nil, err
		}
	}
	c := &config{}
	for _, o := range options {
		v, source := o.def, "default"
		if fv, ok := fromFile[o.name]; ok {
			v, source = fv, *configFile
			delete(fromFile, o.name)
		}
		if ev := getenv(envName(o.name)); ev != "" {
			v, source = ev, envName(o.name)
		}
		if fv, ok := setByFlag[o.name]; ok {
			v, source = fv, "--"+o.name
		}
		if err := o.apply(c, v); err != nil {
			return nil, fmt.Errorf("%s (from %s)", err, source)
		}
	}
	for k := range fromFile {
		return nil, fmt.Errorf("%s: unknown setting %q", *configFile, k)
	}
	if err := c.checkCluster(); err != nil {
		return nil, err
	}
	if err := c.checkGroups(); err != nil {
		return nil, err
	}
	return c, nil
}

// checkCluster checks the cluster settings against each other: with --peers, this node's id
// must be one of them (for now; non-voting members join with the admin command) and
// --raft-addr, defaulting to its entry, must match it.
func (c *config) checkCluster() error {
	if c.Peers == nil {
		if c.RaftAddr != "" {
			return fmt.Errorf("raft-addr is set but peers is not: a single node has no Raft traffic")
		}
		return nil
	}
	if c.NodeID < 1 {
		return fmt.Errorf("node-id %d: a cluster node's id is 1 or more", c.NodeID)
	}
	// A live node heartbeats a few times per session, and a new controller's wait of three
	// intervals fits in one.
	if 3*c.HeartbeatInterval > c.SessionTimeout {
		return fmt.Errorf("heartbeat-interval %v: must be at most a third of session-timeout %v", c.HeartbeatInterval, c.SessionTimeout)
	}
	if c.DisconnectGrace > c.SessionTimeout {
		return fmt.Errorf("disconnect-grace %v: must be at most session-timeout %v", c.DisconnectGrace, c.SessionTimeout)
	}
	// A live node whose heartbeat connection broke is heard from again within an interval.
	if c.DisconnectGrace > 0 && c.DisconnectGrace < 2*c.HeartbeatInterval {
		return fmt.Errorf("disconnect-grace %v: must be at least twice heartbeat-interval %v (or 0: off)", c.DisconnectGrace, c.HeartbeatInterval)
	}
	if c.NonVoting && !c.Join {
		return fmt.Errorf("non-voting needs join: the first members of a cluster all vote")
	}
	addr, ok := c.Peers[uint64(c.NodeID)]
	if c.Join {
		if ok {
			return fmt.Errorf("node-id %d is among the peers; join is for a node added later", c.NodeID)
		}
		if c.RaftAddr == "" {
			return fmt.Errorf("join needs raft-addr: the address this node was added with")
		}
		return nil
	}
	if !ok {
		return fmt.Errorf("node-id %d is not among the peers %s", c.NodeID, raftlog.FormatPeers(c.Peers))
	}
	if c.RaftAddr == "" {
		c.RaftAddr = addr
	}
	if c.RaftAddr != addr {
		return fmt.Errorf("raft-addr %s differs from this node's entry in peers (%d@%s)", c.RaftAddr, c.NodeID, addr)
	}
	return nil
}

// checkGroups checks the group.consumer.* settings against their bounds, as Kafka does when it
// starts.
func (c *config) checkGroups() error {
	within := func(name string, v, lo, hi time.Duration) error {
		if v < lo || v > hi {
			return fmt.Errorf("group-consumer-%s %v: must be from group-consumer-min-%[1]s %v to group-consumer-max-%[1]s %v", name, v, lo, hi)
		}
		return nil
	}
	if err := within("session-timeout", c.GroupConsumerSessionTimeout, c.GroupConsumerMinSessionTimeout, c.GroupConsumerMaxSessionTimeout); err != nil {
		return err
	}
	if err := within("heartbeat-interval", c.GroupConsumerHeartbeatInterval, c.GroupConsumerMinHeartbeatInterval, c.GroupConsumerMaxHeartbeatInterval); err != nil {
		return err
	}
	if c.GroupConsumerHeartbeatInterval >= c.GroupConsumerSessionTimeout {
		return fmt.Errorf("group-consumer-heartbeat-interval %v: must be less than group-consumer-session-timeout %v", c.GroupConsumerHeartbeatInterval, c.GroupConsumerSessionTimeout)
	}
	return nil
}

// readConfigFile parses `key = value` lines; blank lines and lines starting with # are ignored.
func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected key = value", path, n)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return out, nil
}

func serveUsage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), "Usage: ringtail serve [flags]\n\nStarts a broker. Every flag can also be set in the --config file (same name as key)\nor as an environment variable (RINGTAIL_DATA_DIR for --data-dir); flags win.\n\nFlags:\n")
	fs.PrintDefaults()
}

// advertisedHostPort is where clients are told to connect.
func (c *config) advertisedHostPort() (string, int32, error) {
	addr := c.Advertised
	if addr == "" {
		addr = c.Listen[0]
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("advertised port %q is not a port (with --listen :0, set --advertised)", portStr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if host, err = os.Hostname(); err != nil {
			return "", 0, err
		}
	}
	return host, int32(port), nil
}
