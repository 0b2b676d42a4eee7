package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DescribeCluster, 0, 1, func(h *Handlers) HandleFunc { return h.handleDescribeCluster })
}

// handleDescribeCluster answers DescribeCluster (key 60, v0–1), what kadm's BrokerMetadata and
// kafka-cluster tools send: the cluster id, the controller and the live brokers.
func (h *Handlers) handleDescribeCluster(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterID = h.node.ClusterID()
	resp.ControllerID = h.node.ControllerID()
	for _, b := range h.node.Brokers() {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port, rb.Rack = b.ID, b.Host, b.Port, b.Rack
		resp.Brokers = append(resp.Brokers, rb)
	}
	respond(resp)
}
