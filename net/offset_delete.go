package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleOffsetDelete answers OffsetDelete (key 47, v0): drops committed offsets of partitions the group does not consume.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleOffsetDelete(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
