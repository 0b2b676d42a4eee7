package kafkanet

import "github.com/ringtail/ringtail/net/fetchsession"

// Handlers implements the Kafka APIs over a Node: one file per API, each registering itself
// (its key and version range, written once beside its handler) in apis.
type Handlers struct {
	node     Node
	sessions *fetchsession.Cache // Fetch sessions (KIP-227), broker-wide as in Kafka
}

// NewHandlers returns the handlers of every API the broker serves, over node, with Kafka's
// default fetch session cache (1000 slots).
func NewHandlers(node Node) *Handlers {
	return &Handlers{node: node, sessions: newFetchSessions(fetchsession.DefaultMaxEntries)}
}

// SetFetchSessionCacheSlots sets how many fetch sessions the broker keeps
// (max.incremental.fetch.session.cache.slots; 0: none, every fetch is sessionless). Call it
// before the handlers serve.
func (h *Handlers) SetFetchSessionCacheSlots(slots int) { h.sessions = newFetchSessions(slots) }

// FetchSessionStats says what the fetch session cache holds (metrics).
func (h *Handlers) FetchSessionStats() fetchsession.Stats { return h.sessions.Stats() }

// Register adds every API of h to reg.
func (h *Handlers) Register(reg *Registry) {
	for _, a := range apis {
		reg.Register(API{Key: a.key.Int16(), MinVersion: a.min, MaxVersion: a.max, Handle: a.handler(h, reg)})
	}
}
