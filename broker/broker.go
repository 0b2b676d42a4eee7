package broker

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/raftlog"
)

// Config is everything a node needs to open.
type Config struct {
	NodeID         int32
	AdvertisedHost string
	AdvertisedPort int32
	// DataDir holds meta/ (the metadata store) and logs/ (the partition logs and their WAL).
	DataDir           string
	AutoCreateTopics  bool  // auto.create.topics.enable
	DefaultPartitions int32 // num.partitions for auto-created topics
	// MaxRequestBytes is socket.request.max.bytes, enforced by the listener and reported here.
	MaxRequestBytes int32

	// Storage.
	Durability             string // engine.DurabilityFsync (default) or engine.DurabilityNone
	WALIO                  string // auto, uring or portable
	SegmentBytes           int64
	RetentionCheckInterval time.Duration
	// LogCleaner: compaction of cleanup.policy=compact topics (engine/cleaner.go). Disabled, such
	// topics only grow (Kafka's log.cleaner.enable=false); the interval is how often it looks
	// for work (0: engine.DefaultCleanerInterval), the rate bounds its reads plus writes (0: none).
	LogCleanerDisabled         bool
	LogCleanerInterval         time.Duration
	LogCleanerIOBytesPerSecond int64
	// OnWALCycle, when set, is told about every WAL cycle (metrics).
	OnWALCycle func(records int, bytes int64, took time.Duration, err error)
	// OnCommittedAppend, when set, is told about every append answered once committed (an
	// acks=all produce, a group coordinator's or a transaction marker's write) that succeeded:
	// how long it took to be durable on this node (local) and then for the high watermark to
	// pass it (replication; 0 on one node). Kafka reports these as LocalTimeMs and RemoteTimeMs.
	OnCommittedAppend func(local, replication time.Duration)

	// OffsetsTopicPartitions is the partition count __consumer_offsets is created with
	// (offsets.topic.num.partitions); an existing topic keeps its count. 0 means
	// DefaultOffsetsTopicPartitions.
	OffsetsTopicPartitions int32
	// TxnTopicPartitions is the partition count __transaction_state is created with
	// (transaction.state.log.num.partitions); 0 means DefaultTxnTopicPartitions.
	TxnTopicPartitions int32
	// TxnIDExpiration is transactional.id.expiration.ms: a transactional id idle this long is
	// forgotten (a tombstone in __transaction_state); 0 means Kafka's 7 days.
	TxnIDExpiration time.Duration
	// ProducerIDExpiration is producer.id.expiration.ms: each partition forgets a producer
	// whose last batch is this old and which has no transaction open, on the retention timer;
	// 0 means engine.DefaultProducerIDExpiration (Kafka's 1 day).
	ProducerIDExpiration time.Duration
	// Groups is what every group coordinator is configured with (the group.* settings; its
	// Incarnation, Topics and ConsumerTopics are set by the node).
	Groups group.Config

	// Cluster makes the node a member of a cluster (cluster.go); nil: a single node, whose
	// metadata is a local command log.
	Cluster *ClusterConfig

	Logger *slog.Logger
}

// Broker is one node: its metadata, its partition logs, its group coordinator and its
// purgatory. Its methods are safe for concurrent use.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	meta   *meta.Store
	engine *engine.Engine
	groups atomic.Pointer[groupHost] // nil until __consumer_offsets exists (a new cluster)
	txns   atomic.Pointer[txnHost]   // nil until __transaction_state exists (txn_host.go)
	// txnStartMu serialises the creation of __transaction_state on a single node.
	txnStartMu sync.Mutex
	// markerClients are the connections to other brokers that carry WriteTxnMarkers.
	markerClients markerClients
	// verified remembers the transactional batches' partitions verified (txn_verify.go).
	verified verifiedTxns
	purg     *Purgatory
	cl       *cluster  // nil on a single node
	repl     *replicas // nil on a single node

	shutdownOnce sync.Once

	// failed is closed when a cluster node's storage failed (storageFailed); failure says how.
	failed    chan struct{}
	failOnce  sync.Once
	failure   error
	hasFailed atomic.Bool

	// The retention timer runs here rather than in the engine, so SIGHUP can change its
	// interval (SetRetentionCheckInterval); the engine's own timer is off.
	retentionInterval chan time.Duration // a new interval for the loop
	retentionStop     chan struct{}
	retentionDone     chan struct{}

	// topicMu serialises topic creation, deletion and changes, so the metadata store and the
	// engine never disagree about which partitions exist or how they are configured.
	topicMu sync.Mutex

	// policyWarned: internal topics whose cleanup.policy could not be recorded, logged once
	// (recordCompactPolicy).
	policyWarned sync.Map
}

// Open opens the node's parts in order: the metadata store, the partition logs it lists
// (recovering them; directories of partitions it does not list are removed), the purgatory,
// and a group coordinator per __consumer_offsets partition this node leads, each replayed
// from its partition. On error, whatever was
// opened is closed again.
func Open(cfg Config) (*Broker, error) { return OpenContext(context.Background(), cfg) }

// OpenContext is Open with a context that ends waits at start: a cluster node waits for a
// quorum of the metadata cluster and for its registration.
func OpenContext(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, failed: make(chan struct{})}
	mcfg := meta.Config{Dir: filepath.Join(cfg.DataDir, "meta"), NodeID: cfg.NodeID, Logger: cfg.Logger}
	if cfg.Cluster != nil {
		cfg.Cluster.withDefaults()
		rl, err := b.openRaft(ctx)
		if err != nil {
			return nil, err
		}
		mcfg.Log = rl
	}
	store, err := meta.Open(mcfg)
	if err != nil {
		if mcfg.Log != nil {
			mcfg.Log.Close()
		}
		return nil, err
	}
	b.meta = store
	start := time.Now()
	b.purg = NewPurgatory(time.Now)
	eng, err := engine.Open(engine.Config{
		DataDir:          filepath.Join(cfg.DataDir, "logs"),
		Durability:       cfg.Durability,
		WALIO:            cfg.WALIO,
		SegmentBytes:     cfg.SegmentBytes,
		Logger:           cfg.Logger,
		OnWALCycle:       cfg.OnWALCycle,
		OnDurable:        b.onDurable,
		OnAppend:         b.onAppend,
		OnStorageFailure: b.storageFailed,
		// A cluster node stops on a storage failure (storageFailed); meanwhile no append may
		// land at the offsets it rolled back.
		RefuseAppendsAfterStorageFailure: cfg.Cluster != nil,
		ReplicaTailBytes:                 b.replicaTailBytes(),
		RetentionCheckInterval:           -1, // runRetention
		CleanerInterval:                  cleanerInterval(cfg),
		CleanerIOBytesPerSecond:          cfg.LogCleanerIOBytesPerSecond,
		ProducerIDExpiration:             cfg.ProducerIDExpiration,
	}, b.localSpecs(store.State()))
	if err != nil {
		b.purg.Close()
		store.Close()
		return nil, err
	}
	b.engine = eng
	b.startRetention()
	b.log.Info("storage recovered", "topics", len(store.Topics()), "took", time.Since(start).Round(time.Millisecond),
		"durability", b.durability(), "wal_io", eng.WALMode())
	if reason := eng.WALFallbackReason(); reason != "" {
		b.log.Warn("io_uring is not in use; the WAL uses pwrite+fdatasync", "reason", reason)
	}
	if cfg.Cluster != nil {
		if err := b.startCluster(ctx, mcfg.Log.(*raftlog.Log)); err != nil {
			b.stopRetention()
			b.purg.Close()
			eng.Close()
			store.Close()
			return nil, err
		}
		// Group coordinators follow the leaderships of the __consumer_offsets partitions
		// (followGroups), which the controller creates once enough brokers are live.
		return b, nil
	}
	if err := b.startGroups(); err != nil {
		b.stopRetention()
		b.purg.Close()
		eng.Close()
		store.Close()
		return nil, err
	}
	if err := b.startTxns(); err != nil {
		if g := b.groups.Load(); g != nil {
			g.close()
		}
		b.stopRetention()
		b.purg.Close()
		eng.Close()
		store.Close()
		return nil, err
	}
	return b, nil
}

// localSpecs lists the partitions the engine must open: on a single node every partition, in
// a cluster the ones placed on this node.
func (b *Broker) localSpecs(st *meta.State) []engine.PartitionSpec {
	if b.cfg.Cluster == nil {
		return PartitionSpecs(st.Topics())
	}
	me := b.cfg.NodeID
	var specs []engine.PartitionSpec
	for _, t := range st.Topics() {
		cfg := partitionConfig(t)
		for p, a := range t.Assignments {
			if !slices.Contains(a.Replicas, me) {
				continue
			}
			specs = append(specs, engine.PartitionSpec{
				TopicPartition: TopicPartition{Topic: t.Name, Partition: int32(p)},
				TopicID:        t.ID,
				Config:         cfg,
				LeaderEpoch:    a.LeaderEpoch,
				// The high watermark is the leader's replication tracker's to move.
			})
		}
	}
	return specs
}

// Shutdown begins a stop: in a cluster, a controlled shutdown moves this node's leaderships
// away (while it still serves, so clients move with them). Close follows.
func (b *Broker) Shutdown() {
	if b.cl != nil {
		b.shutdownOnce.Do(b.closeCluster)
	}
}

// Close answers every parked request (group requests NOT_COORDINATOR), stops the group
// coordinators and closes the partition logs (a last sync and checkpoint: appends already
// queued complete normally).
func (b *Broker) Close() error {
	b.Shutdown()
	b.stopRetention()
	b.purg.Close()
	if g := b.groups.Load(); g != nil {
		g.close()
	}
	if t := b.txns.Load(); t != nil {
		t.close()
	}
	b.markerClients.close()
	err := b.engine.Close()
	if merr := b.meta.Close(); err == nil && merr != nil {
		err = fmt.Errorf("closing the metadata store: %w", merr)
	} else if err != nil {
		err = fmt.Errorf("closing storage: %w", err)
	}
	return err
}

func (b *Broker) durability() string {
	if b.cfg.Durability == "" {
		return engine.DurabilityFsync
	}
	return b.cfg.Durability
}

// NodeID is this broker's id.
func (b *Broker) NodeID() int32 { return b.cfg.NodeID }

// Advertised is the host and port clients are told to connect to.
func (b *Broker) Advertised() (host string, port int32) {
	return b.cfg.AdvertisedHost, b.cfg.AdvertisedPort
}

// ClusterID is the cluster's stable identity.
func (b *Broker) ClusterID() string { return b.meta.ClusterID() }

// Storage is the partition-log engine, for metrics and diagnostics: its WAL mode, cycles and
// checkpoint state. Requests never go through it directly.
func (b *Broker) Storage() *engine.Engine { return b.engine }

// NextProducerID hands out a producer id never handed out before (InitProducerId).
func (b *Broker) NextProducerID() (int64, error) {
	id, err := b.meta.NextProducerID()
	return id, b.metadataError(err)
}

// BrokerSetting is one static broker config as DescribeConfigs reports it.
type BrokerSetting struct{ Name, Value string }

// Settings lists this broker's static configs (DescribeConfigs on the broker resource).
func (b *Broker) Settings() []BrokerSetting {
	settings := []BrokerSetting{
		{"broker.id", fmt.Sprint(b.cfg.NodeID)},
		{"auto.create.topics.enable", fmt.Sprint(b.cfg.AutoCreateTopics)},
		{"num.partitions", fmt.Sprint(b.cfg.DefaultPartitions)},
		{"socket.request.max.bytes", fmt.Sprint(b.cfg.MaxRequestBytes)},
		{"log.dirs", b.cfg.DataDir},
		{"offsets.topic.num.partitions", fmt.Sprint(b.offsetsPartitions())},
		{"ringtail.durability", b.durability()},
		{"ringtail.wal.io", b.engine.WALMode()},
		{"log.cleaner.enable", fmt.Sprint(!b.cfg.LogCleanerDisabled)},
		{"log.cleaner.io.max.bytes.per.second", fmt.Sprint(b.cfg.LogCleanerIOBytesPerSecond)},
		{"advertised.listeners", fmt.Sprintf("PLAINTEXT://%s:%d", b.cfg.AdvertisedHost, b.cfg.AdvertisedPort)},
	}
	if b.cl != nil {
		settings = append(settings, BrokerSetting{"ringtail.broker.epoch", fmt.Sprint(b.cl.epoch.Load())})
	}
	return settings
}

// offsetsPartitions is the partition count of __consumer_offsets (0 before it exists).
func (b *Broker) offsetsPartitions() int32 {
	if g := b.groups.Load(); g != nil {
		return g.partitions
	}
	return 0
}

// startRetention starts the timer that deletes segments past their topic's retention every
// RetentionCheckInterval (default engine.DefaultRetentionCheckInterval; negative: off).
func (b *Broker) startRetention() {
	interval := b.cfg.RetentionCheckInterval
	if interval < 0 {
		return
	}
	if interval == 0 {
		interval = engine.DefaultRetentionCheckInterval
	}
	b.retentionInterval = make(chan time.Duration, 1)
	b.retentionStop, b.retentionDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.retentionDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.retentionStop:
				return
			case d := <-b.retentionInterval:
				t.Reset(d)
			case <-t.C:
				b.engine.EnforceRetention()
			}
		}
	}()
}

// cleanerInterval is the engine's CleanerInterval: negative turns the cleaner off.
func cleanerInterval(cfg Config) time.Duration {
	if cfg.LogCleanerDisabled {
		return -1
	}
	return cfg.LogCleanerInterval
}

// SetRetentionCheckInterval changes the retention timer's interval from now on (SIGHUP); it
// reports false when the timer is off.
func (b *Broker) SetRetentionCheckInterval(d time.Duration) bool {
	if b.retentionInterval == nil || d <= 0 {
		return false
	}
	select {
	case <-b.retentionInterval: // a change not taken yet: this one replaces it
	default:
	}
	b.retentionInterval <- d
	return true
}

func (b *Broker) stopRetention() {
	if b.retentionStop != nil {
		close(b.retentionStop)
		<-b.retentionDone
		b.retentionStop = nil
	}
}
