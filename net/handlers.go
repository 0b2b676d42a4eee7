package kafkanet

// Handlers implements the Kafka APIs over a Node: one file per API, each registering itself
// (its key and version range, written once beside its handler) in apis.
type Handlers struct {
	node Node
}

// NewHandlers returns the handlers of every API the broker serves, over node.
func NewHandlers(node Node) *Handlers { return &Handlers{node: node} }

// Register adds every API of h to reg.
func (h *Handlers) Register(reg *Registry) {
	for _, a := range apis {
		reg.Register(API{Key: a.key.Int16(), MinVersion: a.min, MaxVersion: a.max, Handle: a.handler(h, reg)})
	}
}
