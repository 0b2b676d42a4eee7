package engine

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Small WAL files keep the many Opens of the tests cheap (each new file
	// is zero-filled once).
	defaultWALFileBytes = 1 << 20
	os.Exit(m.Run())
}
