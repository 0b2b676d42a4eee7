package kafkanet

import (
	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.CreateTopics, 0, 7, func(h *Handlers) HandleFunc { return h.handleCreateTopics })
}

// handleCreateTopics answers CreateTopics (key 19). The node checks the partition count,
// replication factor and assignment against the brokers it has.
func (h *Handlers) handleCreateTopics(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions = -1
		st.ReplicationFactor = -1
		t, err := h.createFromRequest(rt, req.ValidateOnly)
		if err != nil {
			c.Log.Warn("create topics: refused", "topic", rt.Topic, "err", err)
			st.ErrorCode = errorCode(err)
			st.ErrorMessage = errorMessage(err)
		} else {
			st.TopicID = t.ID
			st.NumPartitions = t.Partitions
			st.ReplicationFactor = 1 // a single node's topics
			if len(t.Assignments) > 0 {
				st.ReplicationFactor = int16(len(t.Assignments[0].Replicas))
			}
			for _, name := range sortedConfigNames() {
				cfg := kmsg.NewCreateTopicsResponseTopicConfig()
				cfg.Name = name
				v := t.Effective(name)
				cfg.Value = &v
				cfg.Source = configSource(t, name)
				st.Configs = append(st.Configs, cfg)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}

func (h *Handlers) createFromRequest(rt kmsg.CreateTopicsRequestTopic, validateOnly bool) (broker.Topic, error) {
	r := broker.CreateTopicRequest{
		Name:              rt.Topic,
		Partitions:        rt.NumPartitions,
		ReplicationFactor: rt.ReplicationFactor,
		Configs:           make(map[string]string, len(rt.Configs)),
		ValidateOnly:      validateOnly,
	}
	for _, a := range rt.ReplicaAssignment {
		r.Assignment = append(r.Assignment, a.Replicas)
	}
	for _, cfg := range rt.Configs {
		if cfg.Value == nil {
			continue // null means "use the default"
		}
		r.Configs[cfg.Name] = *cfg.Value
	}
	return h.node.CreateTopic(r)
}
