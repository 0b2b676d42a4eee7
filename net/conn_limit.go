package kafkanet

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Connections past max.connections, and the brokers' own.
//
// Kafka exempts its inter-broker listener from max.connections; Ringtail has one listener, and
// the other brokers' heartbeats and ISR changes (BrokerHeartbeat, AlterPartition, sent by
// internal/kclient) arrive on it. A client limit must not cut a cluster apart, so a connection
// accepted past the limit is held on probation instead of being closed at once: its first
// request decides. An inter-broker request makes it an inter-broker connection, outside the
// count, which may then send inter-broker requests and ApiVersions only (so a client gains
// nothing by starting with one); any other request closes it as refused. A connection within
// the limit whose first request is an inter-broker one leaves the count the same way. Probation is bounded
// in number, frame size and time, so connections past the limit cost little.
const (
	// probationMax bounds the connections on probation at once; past it one is closed at once.
	probationMax = 8
	// probationFrameMax bounds a frame on probation: an inter-broker request is small.
	probationFrameMax = 64 << 10
	// probationTimeout closes a connection on probation that sends no request.
	probationTimeout = 10 * time.Second
)

// A connection's place in the count; Server.open counts connCounted, Server.probation
// connOnProbation.
const (
	connCounted     int32 = iota // a client's, within max.connections
	connOnProbation              // past the limit, before its first request
	connInterBroker              // a broker's: outside max.connections
	connClosed                   // onClose ran
)

// interBrokerKey reports whether key is a request only brokers send each other.
func interBrokerKey(key int16) bool {
	return key == int16(kmsg.BrokerHeartbeat) || key == int16(kmsg.AlterPartition)
}

// admit decides, before a request of key is handled, whether the connection may send it: a
// connection on probation becomes an inter-broker one or is refused, an inter-broker one sends
// inter-broker requests and ApiVersions only. false: close the connection (logged here).
// Request goroutine only.
func (c *connection) admit(key int16) bool {
	defer func() { c.requests++ }()
	switch c.place.Load() {
	case connCounted:
		// A broker's connection that came in under the limit leaves the count too: brokers
		// never take clients' places. A broker's first request is an inter-broker one
		// (internal/kclient sends no ApiVersions); a client's connection that sends one later
		// stays what it is.
		if c.requests == 0 && interBrokerKey(key) && c.place.CompareAndSwap(connCounted, connInterBroker) {
			c.srv.open.Add(-1)
		}
	case connOnProbation:
		if !interBrokerKey(key) {
			c.srv.refuseConn(c.remote, c.srv.cfg.MaxConnections)
			return false
		}
		if c.place.CompareAndSwap(connOnProbation, connInterBroker) {
			c.srv.probation.Add(-1)
			c.log.Info("a connection past max.connections is a broker's (its first request is inter-broker): kept outside the limit",
				"api", kmsg.NameForKey(key))
		}
	case connInterBroker:
		if !interBrokerKey(key) && key != int16(kmsg.ApiVersions) {
			c.log.Warn("an inter-broker connection (outside max.connections) sent a client request; closing it", "api", kmsg.NameForKey(key))
			return false
		}
	}
	return true
}

// forgetPlace takes a closing connection out of whichever count holds it.
func (c *connection) forgetPlace() {
	switch c.place.Swap(connClosed) {
	case connCounted:
		c.srv.open.Add(-1)
	case connOnProbation:
		c.srv.probation.Add(-1)
	}
}
