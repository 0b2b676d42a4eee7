package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.OffsetFetch, 0, 9, func(h *Handlers) HandleFunc { return h.handleOffsetFetch })
}

// handleOffsetFetch answers OffsetFetch (key 9, v0–v9, several groups per request from v8, require_stable).
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleOffsetFetch(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
