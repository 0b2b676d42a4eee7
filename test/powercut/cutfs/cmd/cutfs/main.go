// Command cutfs mounts a cutfs file system (package cutfs): a mirror of
// BACKING_DIR at MOUNTPOINT whose file data stays in this process's memory
// until it is synced. Killing the process with SIGKILL is a power cut:
// BACKING_DIR then holds exactly the synced data, and MOUNTPOINT is a dead
// mount to be detached (umount -l).
//
//	cutfs BACKING_DIR MOUNTPOINT
//
// It prints "ready" on stdout once mounted and serves until killed. SIGUSR1
// holds syncs from then on, as a disk that stops completing flushes would
// (cutfs.FS.HoldSyncs); it prints "holding syncs" once they are, and "sync
// held" once the first sync waits on the hold (cutfs.FS.SyncHeld). SIGTERM or
// SIGINT unmount it (also discarding what was not synced) when nothing on it
// is open. Exit status 3 means FUSE cannot be mounted here (no /dev/fuse,
// not permitted), 1 any other failure.
//
// SIGUSR2 toggles write faults: every write to a file whose base name
// matches the pattern in CUTFS_FAIL_MATCH (filepath.Match; default "*")
// fails with CUTFS_FAIL_ERRNO (EIO, the default, or ENOSPC) until the next
// SIGUSR2. It prints "failing writes" or "writes healed".
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringtail/ringtail/test/powercut/cutfs"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cutfs BACKING_DIR MOUNTPOINT")
		os.Exit(2)
	}
	failErrno := syscall.EIO
	switch e := os.Getenv("CUTFS_FAIL_ERRNO"); e {
	case "", "EIO":
	case "ENOSPC":
		failErrno = syscall.ENOSPC
	default:
		fmt.Fprintf(os.Stderr, "cutfs: CUTFS_FAIL_ERRNO=%q: want EIO or ENOSPC\n", e)
		os.Exit(2)
	}
	failMatch := os.Getenv("CUTFS_FAIL_MATCH")
	if failMatch == "" {
		failMatch = "*"
	}
	srv, err := cutfs.Mount(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "cutfs: mount %s on %s: %v\n", os.Args[1], os.Args[2], err)
		if cutfs.Refused(err) {
			os.Exit(3)
		}
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		failing := false
		for s := range sig {
			switch s {
			case syscall.SIGUSR1:
				srv.HoldSyncs()
				fmt.Println("holding syncs")
				go func(held <-chan struct{}) {
					<-held
					fmt.Println("sync held")
				}(srv.SyncHeld())
				continue
			case syscall.SIGUSR2:
				if failing = !failing; failing {
					srv.FailWrites(failErrno, failMatch)
					fmt.Println("failing writes")
				} else {
					srv.HealWrites()
					fmt.Println("writes healed")
				}
				continue
			}
			if err := srv.Unmount(); err != nil {
				fmt.Fprintf(os.Stderr, "cutfs: unmount: %v\n", err)
			}
		}
	}()
	srv.Wait()
}
