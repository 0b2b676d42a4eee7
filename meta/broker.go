package meta

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
)

// maxBrokerStringLen bounds a broker's addresses and rack.
const maxBrokerStringLen = 255

// Broker is one registered broker, as read from a State.
type Broker struct {
	ID int32
	// Epoch is the broker epoch of this registration: a counter of the state, bumped by every
	// registration of a new incarnation of any broker, so it only grows. Commands about the
	// broker name it, so one built for an earlier process of the broker is refused as stale.
	Epoch int64
	// Incarnation is what the broker's process drew at start; a registration with the same
	// incarnation is a repeat of this one.
	Incarnation [16]byte
	// Listener is the advertised Kafka listener (host:port), what clients connect to.
	Listener string
	// ReplicationAddr is the replication listener (host:port), "" for a broker without one.
	ReplicationAddr string
	// Rack is "" for a broker without one.
	Rack string
	// Fenced: the broker is not known to be alive (it registered and has not heartbeated
	// yet, or its session ran out, or its controlled shutdown is done). It leads nothing and
	// takes no new replica or ISR place.
	Fenced bool
	// InControlledShutdown: the broker is leaving; its leaderships move away, it leaves the
	// ISRs, and it takes no new leadership, replica or ISR place.
	InControlledShutdown bool
}

// Active says whether the broker may take a new leadership, replica or ISR place: it is
// neither fenced nor shutting down.
func (b Broker) Active() bool { return !b.Fenced && !b.InControlledShutdown }

// Brokers returns the registered brokers sorted by id (none on a single node, which does not
// register).
func (s *State) Brokers() []Broker {
	out := make([]Broker, 0, len(s.brokers))
	for _, b := range s.brokers {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Broker returns one registered broker.
func (s *State) Broker(id int32) (Broker, bool) {
	b, ok := s.brokers[id]
	return b, ok
}

// ineligible says why broker id may not take a new leadership, replica or ISR place, or ""
// when it may. Only asked once brokers are registered.
func (s *State) ineligible(id int32) string {
	b, ok := s.brokers[id]
	switch {
	case !ok:
		return fmt.Sprintf("broker %d is not registered", id)
	case b.Fenced:
		return fmt.Sprintf("broker %d is fenced", id)
	case b.InControlledShutdown:
		return fmt.Sprintf("broker %d is in controlled shutdown", id)
	}
	return ""
}

// checkPlacement refuses new partitions with a replica on a broker that may not take one. A
// state without registered brokers is a single node's, whose own id has no record: there
// every id is accepted, as before brokers existed.
func checkPlacement(s *State, ps []NewPartition, first int32) error {
	if len(s.brokers) == 0 {
		return nil
	}
	for i, p := range ps {
		for _, id := range p.Replicas {
			if why := s.ineligible(id); why != "" {
				return fmt.Errorf("%w: partition %d replicas %v: %s", ErrInvalidReplicaAssignment, first+int32(i), p.Replicas, why)
			}
		}
	}
	return nil
}

func checkAddress(what, addr string, optional bool) error {
	if addr == "" && optional {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		err = fmt.Errorf("no host")
	}
	if err == nil {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
			err = fmt.Errorf("port %q is not 1..65535", port)
		}
	}
	if err == nil && len(addr) > maxBrokerStringLen {
		err = fmt.Errorf("longer than %d bytes", maxBrokerStringLen)
	}
	if err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrInvalidCommand, what, addr, err)
	}
	return nil
}

func applyRegisterBroker(s *State, c RegisterBroker) (Result, error) {
	if c.ID < 0 {
		return Result{}, fmt.Errorf("%w: broker id %d is negative", ErrInvalidCommand, c.ID)
	}
	if c.Incarnation == ([16]byte{}) {
		return Result{}, fmt.Errorf("%w: broker %d registers without an incarnation", ErrInvalidCommand, c.ID)
	}
	if err := checkAddress("listener", c.Listener, false); err != nil {
		return Result{}, err
	}
	if err := checkAddress("replication address", c.ReplicationAddr, true); err != nil {
		return Result{}, err
	}
	if len(c.Rack) > maxBrokerStringLen {
		return Result{}, fmt.Errorf("%w: rack longer than %d bytes", ErrInvalidCommand, maxBrokerStringLen)
	}
	if b, ok := s.brokers[c.ID]; ok {
		if b.Incarnation == c.Incarnation {
			// The same process registering again: its proposal timed out and was retried, or
			// committed twice. It gets the epoch it got, whatever happened to it since.
			if b.Listener != c.Listener || b.ReplicationAddr != c.ReplicationAddr || b.Rack != c.Rack {
				return Result{}, fmt.Errorf("%w: broker %d incarnation %s is registered with listener %q, replication address %q, rack %q; a process registers once", ErrInvalidCommand, c.ID, formatID(c.Incarnation), b.Listener, b.ReplicationAddr, b.Rack)
			}
			return Result{BrokerEpoch: b.Epoch}, nil
		}
		if !b.Fenced {
			return Result{}, fmt.Errorf("%w: broker %d is registered at broker epoch %d by incarnation %s, which is not fenced", ErrDuplicateBroker, c.ID, b.Epoch, formatID(b.Incarnation))
		}
	}
	if s.brokerEpoch == math.MaxInt64 {
		return Result{}, fmt.Errorf("%w: broker epochs exhausted", ErrInvalidCommand)
	}
	s.brokerEpoch++
	s.brokers[c.ID] = Broker{ID: c.ID, Epoch: s.brokerEpoch, Incarnation: c.Incarnation, Listener: c.Listener,
		ReplicationAddr: c.ReplicationAddr, Rack: c.Rack, Fenced: true}
	return Result{BrokerEpoch: s.brokerEpoch}, nil
}

// brokerAt finds broker id and checks it is still at broker epoch epoch.
func brokerAt(s *State, id int32, epoch int64) (Broker, error) {
	b, ok := s.brokers[id]
	if !ok {
		return Broker{}, &staleError{kind: ErrUnknownBroker, msg: fmt.Sprintf("broker %d is not registered (unregistered since, or never)", id)}
	}
	if b.Epoch != epoch {
		return Broker{}, &staleError{msg: fmt.Sprintf("broker %d is at broker epoch %d, the command names %d (built for another registration)", id, b.Epoch, epoch)}
	}
	return b, nil
}

func applyFenceBroker(s *State, c FenceBroker) error {
	b, err := brokerAt(s, c.ID, c.Epoch)
	if err != nil {
		return err
	}
	if b.Fenced {
		return &staleError{msg: fmt.Sprintf("broker %d is already fenced at broker epoch %d", c.ID, c.Epoch)}
	}
	if led := s.PartitionsLedBy(c.ID); len(led) > 0 {
		return &staleError{msg: fmt.Sprintf("broker %d still leads %s-%d (%d partitions in all): its leaderships move before it is fenced", c.ID, led[0].Topic, led[0].Partition, len(led))}
	}
	b.Fenced = true
	s.brokers[c.ID] = b
	return nil
}

func applyUnfenceBroker(s *State, c UnfenceBroker) error {
	b, err := brokerAt(s, c.ID, c.Epoch)
	if err != nil {
		return err
	}
	if !b.Fenced {
		return &staleError{msg: fmt.Sprintf("broker %d is not fenced at broker epoch %d", c.ID, c.Epoch)}
	}
	if b.InControlledShutdown {
		return &staleError{msg: fmt.Sprintf("broker %d is in controlled shutdown: it comes back by registering again", c.ID)}
	}
	b.Fenced = false
	s.brokers[c.ID] = b
	return nil
}

func applyBeginControlledShutdown(s *State, c BeginControlledShutdown) error {
	b, err := brokerAt(s, c.ID, c.Epoch)
	if err != nil {
		return err
	}
	if b.InControlledShutdown {
		return &staleError{msg: fmt.Sprintf("broker %d is already in controlled shutdown at broker epoch %d", c.ID, c.Epoch)}
	}
	b.InControlledShutdown = true
	s.brokers[c.ID] = b
	return nil
}

func applyUnregisterBroker(s *State, c UnregisterBroker) error {
	b, err := brokerAt(s, c.ID, c.Epoch)
	if err != nil {
		return err
	}
	if !b.Fenced {
		return fmt.Errorf("%w: broker %d is not fenced: stop it (the controller fences it when its session runs out) before removing it", ErrInvalidCommand, c.ID)
	}
	delete(s.brokers, c.ID)
	return nil
}
