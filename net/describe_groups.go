package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleDescribeGroups answers DescribeGroups (key 15, v0–v6): members, their assignments and the group state.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleDescribeGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
