package kafkanet

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/meta"
)

// handleCreateTopics answers CreateTopics (key 19). Ringtail is a single node for now, so the
// replication factor must be 1 (or -1, the broker default).
func (b *Broker) handleCreateTopics(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions = -1
		st.ReplicationFactor = -1
		t, err := b.createFromRequest(rt, req.ValidateOnly)
		if err != nil {
			c.Log.Warn("create topics: refused", "topic", rt.Topic, "err", err)
			st.ErrorCode = errorCode(err)
			st.ErrorMessage = errorMessage(err)
		} else {
			st.TopicID = t.ID
			st.NumPartitions = t.Partitions
			st.ReplicationFactor = 1
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

func (b *Broker) createFromRequest(rt kmsg.CreateTopicsRequestTopic, validateOnly bool) (meta.Topic, error) {
	partitions := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || rt.ReplicationFactor != -1 {
			return meta.Topic{}, fmt.Errorf("%w: replica assignment given with a partition count or replication factor", kerr.InvalidRequest)
		}
		for _, a := range rt.ReplicaAssignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
				return meta.Topic{}, fmt.Errorf("%w: partition %d assigned to brokers %v; this cluster has only broker %d", meta.ErrInvalidRF, a.Partition, a.Replicas, b.cfg.NodeID)
			}
		}
		partitions = int32(len(rt.ReplicaAssignment))
	}
	if partitions == -1 {
		partitions = b.cfg.DefaultPartitions
	}
	if rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 {
		return meta.Topic{}, fmt.Errorf("%w: %d larger than the 1 available broker", meta.ErrInvalidRF, rt.ReplicationFactor)
	}
	configs := make(map[string]string, len(rt.Configs))
	for _, cfg := range rt.Configs {
		if cfg.Value == nil {
			continue // null means "use the default"
		}
		configs[cfg.Name] = *cfg.Value
	}
	return b.createTopic(rt.Topic, partitions, configs, validateOnly)
}
