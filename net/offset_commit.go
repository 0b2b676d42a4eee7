package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleOffsetCommit answers OffsetCommit (key 8, v0–v9): answered only once the offsets are durable in __consumer_offsets.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleOffsetCommit(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
