package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.SyncGroup, 0, 5, func(h *Handlers) HandleFunc { return h.handleSyncGroup })
}

// handleSyncGroup answers SyncGroup (key 14, v0–v5): the leader hands out assignments; every member's response waits
// until the leader's arrives and the group metadata is durable.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleSyncGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
