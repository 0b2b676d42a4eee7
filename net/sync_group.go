package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleSyncGroup answers SyncGroup (key 14, v0–v5): the leader hands out assignments; every member's response waits
// until the leader's arrives and the group metadata is durable.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleSyncGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
