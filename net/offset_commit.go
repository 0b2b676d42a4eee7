package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.OffsetCommit, 0, 9, func(h *Handlers) HandleFunc { return h.handleOffsetCommit })
}

// handleOffsetCommit answers OffsetCommit (key 8, v0–v9): answered only once the offsets are durable in __consumer_offsets.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleOffsetCommit(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
