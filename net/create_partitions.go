package kafkanet

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/meta"
)

// handleCreatePartitions answers CreatePartitions (key 37, v0–3), what kafka-topics --alter
// --partitions and kadm's CreatePartitions/UpdatePartitions send: a topic's partition count
// grows to the count asked for, durably in the metadata store, then its new partition logs are
// created. Counts never shrink (INVALID_PARTITIONS); an assignment may only name this broker;
// the broker's internal topics keep their layout.
func (b *Broker) handleCreatePartitions(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
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
			err = b.addPartitions(rt, req.ValidateOnly)
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

func (b *Broker) addPartitions(rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) error {
	if isInternal(rt.Topic) {
		return fmt.Errorf("%w: %s is internal; its partitions are the broker's", kerr.InvalidRequest, rt.Topic)
	}
	for _, a := range rt.Assignment {
		if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
			return fmt.Errorf("%w: new partition assigned to brokers %v; this cluster has only broker %d",
				kerr.InvalidReplicaAssignment, a.Replicas, b.cfg.NodeID)
		}
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	old, ok := b.meta.Topic(rt.Topic)
	if !ok {
		return fmt.Errorf("%w: unknown topic %q", kerr.UnknownTopicOrPartition, rt.Topic)
	}
	if rt.Assignment != nil && int32(len(rt.Assignment)) != rt.Count-old.Partitions {
		return fmt.Errorf("%w: %d assignments for %d new partitions", kerr.InvalidReplicaAssignment,
			len(rt.Assignment), rt.Count-old.Partitions)
	}
	t, err := b.meta.SetPartitionCount(rt.Topic, rt.Count, validateOnly)
	if err != nil || validateOnly {
		return err
	}
	// A crash between the store and the engine is repaired at start: the engine creates the
	// partitions the store lists, as after CreateTopics.
	for _, spec := range PartitionSpecs([]meta.Topic{t}) {
		if spec.Partition < old.Partitions {
			continue
		}
		if _, err := b.engine.CreatePartition(spec); err != nil {
			return fmt.Errorf("creating partition %s-%d: %w", spec.Topic, spec.Partition, err)
		}
	}
	return nil
}
