package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.ConsumerGroupHeartbeat, 0, 1, func(h *Handlers) HandleFunc { return h.handleConsumerGroupHeartbeat })
}

// handleConsumerGroupHeartbeat answers ConsumerGroupHeartbeat (key 68, v0–v1): the KIP-848
// consumer protocol, where the coordinator assigns partitions itself (joining is a heartbeat at
// epoch 0, leaving one at -1 or -2). The group coordinator (package group, consumer.go)
// decides; broker/groups.go hosts it.
func (h *Handlers) handleConsumerGroupHeartbeat(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
