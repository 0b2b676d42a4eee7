package group

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// The encoder of the private encoding, kept here (and only here) to write the data directories
// of older Ringtail versions that Replay and Canonical must still read.

func legacyString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func legacyRecord(t *testing.T, rec Record) Record {
	t.Helper()
	d, err := decodeRecord(rec)
	if err != nil || d.legacy {
		t.Fatalf("not a record in Kafka's schemas: %v", err)
	}
	var out Record
	switch d.kind {
	case kindOffset:
		out.Key = legacyString(append([]byte{kindOffset}, legacyString(nil, d.group)...), d.tp.topic)
		out.Key = binary.BigEndian.AppendUint32(out.Key, uint32(d.tp.partition))
		if rec.Value != nil {
			b := []byte{legacyOffsetValueV0}
			b = binary.AppendVarint(b, d.off.offset)
			b = binary.AppendVarint(b, int64(d.off.leaderEpoch))
			b = binary.AppendVarint(b, d.off.commitTime.UnixMilli())
			out.Value = legacyString(b, d.off.metadata)
		}
	case kindGroup:
		out.Key = legacyString([]byte{kindGroup}, d.group)
		if rec.Value != nil {
			gv := d.meta
			b := []byte{legacyGroupValueV0}
			b = legacyString(b, gv.protocolType)
			b = legacyString(b, gv.protocol)
			b = binary.AppendVarint(b, int64(gv.generation))
			b = legacyString(b, gv.leader)
			b = binary.AppendVarint(b, gv.stateTime.UnixMilli())
			b = binary.AppendUvarint(b, uint64(len(gv.members)))
			for _, m := range gv.members {
				b = legacyString(b, m.id)
				if m.instanceID == nil {
					b = binary.AppendVarint(b, -1)
				} else {
					b = binary.AppendVarint(b, int64(len(*m.instanceID)))
					b = append(b, *m.instanceID...)
				}
				b = legacyString(b, m.clientID)
				b = legacyString(b, m.clientHost)
				b = binary.AppendVarint(b, m.session.Milliseconds())
				b = binary.AppendVarint(b, m.rebalance.Milliseconds())
				b = legacyString(b, string(m.metadataFor(gv.protocol)))
				b = legacyString(b, string(m.assignment))
			}
			out.Value = b
		}
	}
	return out
}

func sameRecord(a, b Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil)
}

// TestReplayLegacyEncoding replays the logs of the random workload written in the private
// encoding, wholly and mixed with Kafka's schemas (a data directory of an older version that
// a newer one kept writing to), and checks the state equals the replay of the log as written;
// Canonical turns every legacy record back into exactly the bytes written today.
func TestReplayLegacyEncoding(t *testing.T) {
	cfg := Config{InitialRebalanceDelay: time.Second, OffsetsRetention: 10 * time.Minute}
	for seed := uint64(1); seed <= 10; seed++ {
		log, _ := randomRun(t, seed, 600, false)
		want := New(cfg)
		if err := want.Replay(t0, log); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		for _, mix := range []string{"all", "prefix", "random"} {
			cut := len(log)
			if mix == "prefix" {
				cut = rng.IntN(len(log) + 1)
			}
			old := make([]Record, len(log))
			n := 0
			for i, r := range log {
				old[i] = r
				if i < cut && (mix != "random" || rng.IntN(2) == 0) {
					old[i] = legacyRecord(t, r)
					n++
				}
				back, legacy, err := Canonical(old[i])
				if err != nil || legacy != (old[i].Key[0] != 0) || !sameRecord(back, r) {
					t.Fatalf("seed %d record %d: Canonical gave %x=%x (legacy %v, %v), want %x=%x",
						seed, i, back.Key, back.Value, legacy, err, r.Key, r.Value)
				}
			}
			got := New(cfg)
			if err := got.Replay(t0, old); err != nil {
				t.Fatalf("seed %d %s: %v", seed, mix, err)
			}
			if got.LegacyRecords() != n {
				t.Fatalf("seed %d %s: %d legacy records counted, %d written", seed, mix, got.LegacyRecords(), n)
			}
			if w, g := durable(want, nil), durable(got, nil); w != g {
				t.Fatalf("seed %d %s: state differs\nwant:\n%s\ngot:\n%s", seed, mix, w, g)
			}
		}
	}
}
