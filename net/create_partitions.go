package kafkanet

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.CreatePartitions, 0, 3, func(h *Handlers) HandleFunc { return h.handleCreatePartitions })
}

// handleCreatePartitions answers CreatePartitions (key 37, v0–3), what kafka-topics --alter
// --partitions and kadm's CreatePartitions/UpdatePartitions send: a topic's partition count
// grows to the count asked for (the node stores it durably, then creates the new partition
// logs). Counts never shrink (INVALID_PARTITIONS); an assignment may only name brokers the
// cluster has; the broker's internal topics keep their layout.
func (h *Handlers) handleCreatePartitions(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		if seen[rt.Topic] > 1 {
			err = fmt.Errorf("%w: topic %q appears more than once", kerr.InvalidRequest, rt.Topic)
		} else {
			err = h.addPartitions(rt, req.ValidateOnly)
		}
		if err != nil {
			st.ErrorCode, st.ErrorMessage = errorCode(err), errorMessage(err)
			c.Log.Warn("create partitions: refused", "topic", rt.Topic, "count", rt.Count, "code", st.ErrorCode, "err", err)
		} else if !req.ValidateOnly {
			c.Log.Info("partitions added", "topic", rt.Topic, "count", rt.Count)
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}

func (h *Handlers) addPartitions(rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) error {
	var assignment [][]int32
	if rt.Assignment != nil {
		assignment = make([][]int32, 0, len(rt.Assignment))
		for _, a := range rt.Assignment {
			assignment = append(assignment, a.Replicas)
		}
	}
	return h.node.CreatePartitions(rt.Topic, rt.Count, assignment, validateOnly)
}
