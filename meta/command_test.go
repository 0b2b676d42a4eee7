package meta

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// sampleCommands has every command type, with fields filled and empty.
func sampleCommands() []Command {
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	return []Command{
		InitCluster{ClusterID: "c-1"},
		InitCluster{},
		CreateTopic{Name: "orders", ID: id, Configs: map[string]string{"retention.ms": "1000", "cleanup.policy": "delete"},
			Partitions: []NewPartition{{Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2}, Leader: 2}, {Replicas: []int32{3}, ISR: []int32{3}, Leader: 3}}},
		CreateTopic{Name: "", Partitions: []NewPartition{{}}},
		DeleteTopic{Name: "orders", ID: id},
		SetTopicConfigs{Name: "orders", ID: id, ConfigEpoch: 7, Configs: map[string]string{"segment.ms": "5"}},
		SetTopicConfigs{Name: "x", ConfigEpoch: -1},
		CreatePartitions{Name: "orders", ID: id, ExpectedCount: 2, Partitions: []NewPartition{{Replicas: []int32{1}, ISR: []int32{1}, Leader: 1}}},
		AllocateProducerIDs{Count: 1000},
		AllocateProducerIDs{Count: -5},
		RegisterBroker{ID: 3, Incarnation: id, Listener: "10.0.0.3:9092", ReplicationAddr: "10.0.0.3:9292", Rack: "rack-a"},
		RegisterBroker{},
		FenceBroker{ID: 3, Epoch: 1 << 40},
		UnfenceBroker{ID: 3, Epoch: 7},
		BeginControlledShutdown{ID: 0, Epoch: -1},
		UnregisterBroker{ID: 2, Epoch: 9},
		ChangePartitions{Changes: []PartitionChange{
			{Topic: "orders", TopicID: id, Partition: 4, ExpectedPartitionEpoch: 9, Leader: NoLeader, ISR: []int32{3}},
			{Topic: "x", Partition: 0, Leader: 1, ISR: []int32{1, 2}},
		}},
		ChangePartitions{},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, cmd := range sampleCommands() {
		b := EncodeCommand(cmd)
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%#v: %v", cmd, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Fatalf("round trip of %#v gave %#v", cmd, got)
		}
		if again := EncodeCommand(got); !bytes.Equal(again, b) {
			t.Fatalf("%T: re-encoding differs", cmd)
		}
	}
}

// TestCommandEncodingDeterministic: equal commands, equal bytes, whatever order Go's maps
// iterate in (the encoding of a command is what Raft replicates).
func TestCommandEncodingDeterministic(t *testing.T) {
	configs := map[string]string{}
	for _, k := range []string{"retention.ms", "retention.bytes", "segment.ms", "max.message.bytes", "compression.type"} {
		configs[k] = "1"
	}
	want := EncodeCommand(SetTopicConfigs{Name: "t", Configs: configs})
	for i := 0; i < 20; i++ {
		if got := EncodeCommand(SetTopicConfigs{Name: "t", Configs: configs}); !bytes.Equal(got, want) {
			t.Fatal("two encodings of one command differ")
		}
	}
}

func TestDecodeCommandRefusals(t *testing.T) {
	good := EncodeCommand(sampleCommands()[2])
	cases := map[string][]byte{
		"empty":         nil,
		"tag 0":         {0},
		"unknown tag":   append([]byte{99}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing byte": append(append([]byte{}, good...), 0),
		"huge count":    {tagCreateTopic, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	// Configs out of order: the encoding of every value is unique, so this one is refused.
	unsorted := EncodeCommand(SetTopicConfigs{Name: "t"})
	unsorted = unsorted[:len(unsorted)-1] // drop the empty configs count
	unsorted = append(unsorted, 2)
	unsorted = appendString(appendString(unsorted, "b"), "1")
	unsorted = appendString(appendString(unsorted, "a"), "1")
	cases["configs out of order"] = unsorted
	for name, b := range cases {
		if cmd, err := DecodeCommand(b); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: got %#v, %v; want ErrInvalidCommand", name, cmd, err)
		}
	}
}

// FuzzDecodeCommand: decoding arbitrary bytes never panics, and whatever decodes encodes back
// to the same bytes (one encoding per command).
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range sampleCommands() {
		f.Add(EncodeCommand(cmd))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := DecodeCommand(b)
		if err != nil {
			return
		}
		if again := EncodeCommand(cmd); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %#v, which encodes to %x", b, cmd, again)
		}
	})
}
