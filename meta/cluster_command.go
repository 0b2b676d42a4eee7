package meta

// The commands of a cluster: broker registration and liveness, and partition leadership and
// ISR changes. Each names the broker epoch or partition epoch it was built from
// (compare-and-set), because the controller that built it may have lost its leadership, and a
// proposal that timed out may commit after its retry. Their encodings are listed on Command.

// NoLeader is the leader of a partition that has none (offline): its last in-sync replica is
// fenced, shutting down or gone.
const NoLeader int32 = -1

// MaxPartitionChanges bounds one ChangePartitions, so a command stays well under the size a
// Log accepts (a change is about 60 bytes with a long topic name and three replicas).
const MaxPartitionChanges = 10000

// RegisterBroker records a broker process: its id, the incarnation it drew at start (16 random
// bytes, never zero) and where it listens. Result.BrokerEpoch is the broker epoch of the
// registration.
//
// A new incarnation gets a new broker epoch, the next value of a counter of the state (so
// broker epochs only grow, across brokers and restarts), and comes in fenced: only the
// controller unfences it, once the process heartbeats with that epoch (which also proves it
// has applied its own registration). It is refused (ErrDuplicateBroker) while the broker's
// current registration is unfenced: that process may still be alive, and the controller fences
// it once its session runs out (or its controlled shutdown is done). The same incarnation again
// (a proposal that timed out and was retried) changes nothing and returns the epoch it got.
//
// The state keeps no record of past incarnations: a retry of an earlier process's registration
// that commits after a newer process registered (and was fenced) takes the id back, fenced,
// at a new epoch. The newer process, seeing another incarnation in its registration, registers
// again; it is never unfenced at an epoch that is not its own.
type RegisterBroker struct {
	ID          int32
	Incarnation [16]byte
	// Listener is the advertised Kafka listener, host:port.
	Listener string
	// ReplicationAddr is the replication listener, host:port, or "" for a broker without one.
	ReplicationAddr string
	// Rack is the broker's rack, or "" for none.
	Rack string
}

// FenceBroker fences broker ID if its broker epoch is still Epoch. A fenced broker leads
// nothing: the command is refused (stale) while the broker still leads a partition, so its
// proposer moves the leaderships first (ChangePartitions) and the state never has a leader on
// a fenced broker.
type FenceBroker struct {
	ID    int32
	Epoch int64
}

// UnfenceBroker unfences broker ID if its broker epoch is still Epoch. A broker in controlled
// shutdown is not unfenced: it registers again when its next process starts.
type UnfenceBroker struct {
	ID    int32
	Epoch int64
}

// BeginControlledShutdown marks broker ID (at broker epoch Epoch) as shutting down: it is
// given no new leadership, replica or ISR place, and the controller moves its leaderships away
// and takes it out of the ISRs; it is done when it leads nothing.
type BeginControlledShutdown struct {
	ID    int32
	Epoch int64
}

// UnregisterBroker removes broker ID (at broker epoch Epoch; the admin reads it from the
// state) from the cluster. Only a fenced broker can be removed, so it leads nothing; replicas
// placed on it stay in their partitions' replica lists, offline, until they are reassigned.
type UnregisterBroker struct {
	ID    int32
	Epoch int64
}

// ChangePartitions changes the leader and ISR of partitions, all of them or none. Each change
// names the partition epoch it was built from and bumps it; a change of leader also bumps the
// leader epoch.
type ChangePartitions struct {
	Changes []PartitionChange
}

// PartitionChange is the new leader and ISR of one partition.
//
// The ISR must be a non-empty subset of the replicas without repeats, and the leader one of
// the ISR or NoLeader. Once brokers are registered, a broker that becomes leader or joins the
// ISR must be registered, unfenced and not shutting down; members staying in the ISR may be
// fenced (a partition's last in-sync replica stays in its ISR, leaderless, until it returns).
type PartitionChange struct {
	Topic                  string
	TopicID                [16]byte
	Partition              int32
	ExpectedPartitionEpoch int32
	Leader                 int32 // NoLeader: offline
	ISR                    []int32
}

func (RegisterBroker) tag() byte          { return tagRegisterBroker }
func (FenceBroker) tag() byte             { return tagFenceBroker }
func (UnfenceBroker) tag() byte           { return tagUnfenceBroker }
func (BeginControlledShutdown) tag() byte { return tagBeginControlledShutdown }
func (UnregisterBroker) tag() byte        { return tagUnregisterBroker }
func (ChangePartitions) tag() byte        { return tagChangePartitions }

func (c RegisterBroker) appendFields(b []byte) []byte {
	b = appendInt32(b, c.ID)
	b = append(b, c.Incarnation[:]...)
	b = appendString(b, c.Listener)
	b = appendString(b, c.ReplicationAddr)
	return appendString(b, c.Rack)
}

func appendBrokerEpoch(b []byte, id int32, epoch int64) []byte {
	return appendInt64(appendInt32(b, id), epoch)
}

func (c FenceBroker) appendFields(b []byte) []byte   { return appendBrokerEpoch(b, c.ID, c.Epoch) }
func (c UnfenceBroker) appendFields(b []byte) []byte { return appendBrokerEpoch(b, c.ID, c.Epoch) }
func (c BeginControlledShutdown) appendFields(b []byte) []byte {
	return appendBrokerEpoch(b, c.ID, c.Epoch)
}
func (c UnregisterBroker) appendFields(b []byte) []byte {
	return appendBrokerEpoch(b, c.ID, c.Epoch)
}

func (c ChangePartitions) appendFields(b []byte) []byte {
	b = appendCount(b, len(c.Changes))
	for _, ch := range c.Changes {
		b = appendString(b, ch.Topic)
		b = append(b, ch.TopicID[:]...)
		b = appendInt32(b, ch.Partition)
		b = appendInt32(b, ch.ExpectedPartitionEpoch)
		b = appendInt32(b, ch.Leader)
		b = appendInt32s(b, ch.ISR)
	}
	return b
}

func readPartitionChanges(r *reader) []PartitionChange {
	n := r.count(30) // an empty name, the id, three int32s and an empty ISR
	if n == 0 {
		return nil
	}
	cs := make([]PartitionChange, n)
	for i := range cs {
		cs[i] = PartitionChange{Topic: r.string(), TopicID: r.id(), Partition: r.int32(),
			ExpectedPartitionEpoch: r.int32(), Leader: r.int32(), ISR: r.int32s()}
	}
	return cs
}
