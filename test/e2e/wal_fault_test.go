package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestWALWriteFaults: the WAL's own writes fail (EIO, then ENOSPC) under a running broker, on
// the io_uring writer and on the portable one. The disk is a cutfs mount whose writes to *.wal
// files fail on command, which reaches the io_uring writer's O_DIRECT RWF_DSYNC writes as
// failed completions (no loop device or device mapper needed). While they fail, a produce gets
// KAFKA_STORAGE_ERROR, the broker stays up, logs it and keeps serving reads, and nothing refused
// becomes visible. Once writes work again, produces succeed on the same broker. Then the power is
// cut: every acknowledged record, and none of the refused ones, must be there.
func TestWALWriteFaults(t *testing.T) {
	bin := buildCutfs(t)
	for _, tc := range []struct{ io, errno string }{
		{"uring", "EIO"}, {"uring", "ENOSPC"}, {"portable", "EIO"},
	} {
		t.Run(tc.io+"-"+tc.errno, func(t *testing.T) {
			backing := t.TempDir()
			fsm := mountCutfs(t, bin, backing, "CUTFS_FAIL_MATCH=*.wal", "CUTFS_FAIL_ERRNO="+tc.errno)
			b := startBroker(t, withDataDir(fsm.mnt), withArgs("--wal-io", tc.io))
			topic := "walfault"
			createTopic(t, b.Admin(t), topic, 1, nil)
			cl := b.Client(t, kgo.DefaultProduceTopic(topic))
			var want []string
			for i := range 20 {
				v := "before-" + strconv.Itoa(i)
				produceSync(t, cl, &kgo.Record{Value: []byte(v)})
				want = append(want, v)
			}

			fsm.toggleWriteFaults("failing writes")
			rc := dialRaw(t, b.Addr())
			pv := pickVersion(t, apiVersions(t, b.Addr()), 0, 11)
			for i := range 3 {
				ec, _ := rawProduce(t, rc, pv, topic, 0, encodeBatch(batchSpec{values: [][]byte{[]byte(fmt.Sprintf("refused-%d", i))}}))
				if ec != kerr.KafkaStorageError.Code {
					t.Fatalf("produce %d while WAL writes fail with %s: error code %d (%v), want KAFKA_STORAGE_ERROR (56)", i, tc.errno, ec, kerr.ErrorForCode(ec))
				}
			}
			if !b.Running() {
				t.Fatalf("broker exited when WAL writes failed")
			}
			b.waitLog(t, "remote="+rc.LocalAddr()+" api=Produce", "the refused produce")
			if got := consumeValuesFrom(t, b, topic); !slices.Equal(got, want) {
				t.Fatalf("while WAL writes fail, read %d records %v, want the %d acknowledged ones", len(got), got, len(want))
			}

			fsm.toggleWriteFaults("writes healed")
			for i := range 5 {
				v := "after-" + strconv.Itoa(i)
				ec, _ := rawProduce(t, rc, pv, topic, 0, encodeBatch(batchSpec{values: [][]byte{[]byte(v)}}))
				if ec != 0 {
					t.Fatalf("produce %d after WAL writes work again: error code %d (%v), want success", i, ec, kerr.ErrorForCode(ec))
				}
				want = append(want, v)
			}
			if got := consumeValuesFrom(t, b, topic); !slices.Equal(got, want) {
				t.Fatalf("after the fault, read %v, want %v", got, want)
			}

			fsm.cut()
			b.Kill()
			fsm.detach()
			after := startBroker(t, withDataDir(backing))
			if got := consumeValuesFrom(t, after, topic); !slices.Equal(got, want) {
				t.Fatalf("after a power cut, read %v, want %v", got, want)
			}
		})
	}
}

// consumeValuesFrom reads every record of a one-partition topic, in order, as strings.
func consumeValuesFrom(t *testing.T, b *Broker, topic string) []string {
	t.Helper()
	var vs []string
	for _, r := range consumeAll(t, b, topic)[0] {
		vs = append(vs, string(r.Value))
	}
	return vs
}
