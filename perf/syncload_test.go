package perf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSyncLoadKeepsItsRate(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := SyncLoad{Dir: dir, Bytes: 8192, Rate: 200}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// At most one write per interval after the first (which is at once), however fast the disk.
	if most := int64(st.Loop.Seconds()*200) + 1; st.Writes < 1 || st.Writes > most {
		t.Fatalf("%d writes in %v at 200/s: want 1..%d", st.Writes, st.Loop, most)
	}
	if st.Busy <= 0 || st.Mode == "" {
		t.Fatalf("stats not filled: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "sync-load")); !os.IsNotExist(err) {
		t.Fatalf("the load's file is left behind: %v", err)
	}
}

func TestSyncLoadBackToBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := SyncLoad{Dir: t.TempDir(), Bytes: 4096}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Unpaced: one write follows another, so nearly all of the loop is spent in them.
	if st.Writes < 2 || st.Busy < st.Loop*8/10 {
		t.Fatalf("back to back: %+v", st)
	}
}

func TestSyncLoadRefusesUnalignedWrites(t *testing.T) {
	for _, n := range []int{0, 1000, 4097} {
		if _, err := (SyncLoad{Dir: t.TempDir(), Bytes: n}).Run(context.Background()); err == nil {
			t.Errorf("%d bytes per write accepted", n)
		}
	}
}
