package e2e

import (
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mountSmallFS mounts a small ext4 file system (a loop-mounted image, as the broker's real disk
// would be) for the test, or a tmpfs where loop devices are not available; it skips the test
// when mounting is not possible at all (not root, or no CAP_SYS_ADMIN in a container).
func mountSmallFS(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small file system")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(base, "ext4.img")
	mounted := false
	if err := os.WriteFile(image, nil, 0o644); err == nil && os.Truncate(image, size) == nil {
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", image).CombinedOutput(); err != nil {
			t.Logf("mkfs.ext4: %v %s; trying tmpfs", err, out)
		} else if out, err := exec.Command("mount", "-o", "loop", image, dir).CombinedOutput(); err != nil {
			t.Logf("mount -o loop: %v %s; trying tmpfs", err, out)
		} else {
			mounted = true
		}
	}
	if !mounted {
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a small file system here: %v %s", err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillFS writes a file until the file system is full.
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling the file system: %v", err)
		}
	}
}

// TestDiskFull: with the data directory's file system full, a produce gets KAFKA_STORAGE_ERROR,
// the broker stays up and keeps serving reads, the failure is logged with the client's address,
// and nothing that was refused becomes visible.
func TestDiskFull(t *testing.T) {
	// Big enough for the broker's preallocated write-ahead log (64 MiB files), small enough to fill.
	const fsBytes = 160 << 20
	dir := mountSmallFS(t, fsBytes) // registered first: unmounted after the broker is killed
	b := startBroker(t, func(c *brokerConfig) { c.dataDir = filepath.Join(dir, "data") })
	adm := b.Admin(t)
	createTopic(t, adm, "readable", 1, nil)
	createTopic(t, adm, "full", 1, nil)
	cl := b.Client(t)
	var readable []*kgo.Record
	for i := 0; i < 20; i++ {
		readable = append(readable, &kgo.Record{Topic: "readable", Value: []byte("r" + strconv.Itoa(i))})
	}
	produceSync(t, cl, readable...)
	produceSync(t, cl, &kgo.Record{Topic: "full", Value: []byte("before-full")})

	fillFS(t, filepath.Join(dir, "filler"))

	// Produce 64 KiB batches until one is refused: more than the whole file system can never be
	// stored, so a refusal must come before that much was produced.
	rc := dialRaw(t, b.Addr())
	pv := pickVersion(t, apiVersions(t, b.Addr()), 0, 11)
	acked := int64(1)
	var ec int16
	const attempts = fsBytes/(64<<10) + 16
	for i := 0; i < attempts && ec == 0; i++ {
		v := make([]byte, 64<<10)
		rand.Read(v)
		ec, _ = rawProduce(t, rc, pv, "full", 0, encodeBatch(batchSpec{values: [][]byte{v}}))
		if ec == 0 {
			acked++
		}
	}
	if ec == 0 {
		t.Fatalf("%d produces of 64 KiB all succeeded on a full %d MiB file system", attempts, fsBytes>>20)
	}
	if ec != kerr.KafkaStorageError.Code {
		t.Fatalf("produce on a full disk: error code %d (%v), want KAFKA_STORAGE_ERROR (56)", ec, kerr.ErrorForCode(ec))
	}
	if !b.Running() {
		t.Fatalf("broker exited on a full disk")
	}
	b.waitLog(t, rc.LocalAddr(), "storage error for "+rc.LocalAddr())

	// Reads keep working, and the refused write is not visible.
	got := consumeAll(t, b, "readable")
	if n := countRecords(got); n != len(readable) {
		t.Fatalf("readable topic: %d records, want %d", n, len(readable))
	}
	if end := endOffsets(t, adm, "full")[0]; end != acked {
		t.Fatalf("full topic end offset %d, want %d (only acknowledged records)", end, acked)
	}
	if n := countRecords(consumeAll(t, b, "full")); int64(n) != acked {
		t.Fatalf("full topic: %d records readable, want %d", n, acked)
	}

	// With space again, writes resume on the same broker, after the acknowledged ones.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	ec, _ = rawProduce(t, dialRaw(t, b.Addr()), pv, "full", 0, encodeBatch(batchSpec{values: [][]byte{[]byte("after")}}))
	if ec != 0 {
		t.Fatalf("produce after freeing space: error code %d (%v), want success", ec, kerr.ErrorForCode(ec))
	}
	if end := endOffsets(t, adm, "full")[0]; end != acked+1 {
		t.Fatalf("full topic end offset after space returned: %d, want %d", end, acked+1)
	}
}
