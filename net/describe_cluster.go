package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DescribeCluster, 0, 2, func(h *Handlers) HandleFunc { return h.handleDescribeCluster })
}

// handleDescribeCluster answers DescribeCluster (key 60, v0–2), what kadm's BrokerMetadata and
// kafka-cluster tools send: the cluster id, the controller and the live brokers (v2, when
// asked: the fenced ones too, marked).
func (h *Handlers) handleDescribeCluster(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterID = h.node.ClusterID()
	resp.ControllerID = h.node.ControllerID()
	brokers := h.node.Brokers()
	if req.IncludeFencedBrokers {
		brokers = h.node.AllBrokers()
	}
	for _, b := range brokers {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port, rb.Rack, rb.IsFenced = b.ID, b.Host, b.Port, b.Rack, b.Fenced
		resp.Brokers = append(resp.Brokers, rb)
	}
	respond(resp)
}
