package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var bin struct {
	once sync.Once
	dir  string // the temporary directory of a built binary
	path string
	err  error
}

// Binary is the broker binary brokers run when their config names none:
// $RINGTAIL_BIN (made absolute) when set, else cmd/ringtail built once per
// process into a temporary directory (CleanupBinary removes it). Building
// needs the go command and a working directory inside this module, as under
// go test.
func Binary() (string, error) {
	if env := os.Getenv("RINGTAIL_BIN"); env != "" {
		abs, err := filepath.Abs(env)
		if err != nil {
			return "", fmt.Errorf("cluster: RINGTAIL_BIN: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("cluster: RINGTAIL_BIN: %w", err)
		}
		return abs, nil
	}
	bin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ringtail-cluster-bin-")
		if err != nil {
			bin.err = fmt.Errorf("cluster: %w", err)
			return
		}
		path := filepath.Join(dir, "ringtail")
		out, err := exec.Command("go", "build", "-o", path, "github.com/ringtail/ringtail/cmd/ringtail").CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			bin.err = fmt.Errorf("cluster: building the broker: %v\n%s", err, out)
			return
		}
		bin.dir, bin.path = dir, path
	})
	return bin.path, bin.err
}

// CleanupBinary removes a binary Binary built (nothing when it used
// $RINGTAIL_BIN or built none). Call it at the end of TestMain.
func CleanupBinary() {
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
}
