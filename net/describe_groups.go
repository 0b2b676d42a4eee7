package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DescribeGroups, 0, 6, func(h *Handlers) HandleFunc { return h.handleDescribeGroups })
}

// handleDescribeGroups answers DescribeGroups (key 15, v0–v6): members, their assignments and the group state.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleDescribeGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
