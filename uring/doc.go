// Package uring owns Ringtail's file I/O. Every write, read, sync, truncate
// and directory operation the storage engine performs goes through the small
// File and FS interfaces (fs.go), so that
//
//   - the portable implementation, OSFS (pwrite/pread + fdatasync through
//     golang.org/x/sys/unix), runs wherever io_uring is unavailable, for
//     example under Docker's default seccomp profile;
//   - the ring binding lives in ring*.go, and the WAL writer on top of it
//     in wal*.go: one goroutine per data directory, group commit without a
//     timer, each cycle one RWF_DSYNC write through io_uring (O_DIRECT,
//     registered buffer; a write linked to an fdatasync where the kernel
//     refuses the flag) or, where io_uring is refused, pwrite +
//     fdatasync through the FS, on the same file format (see WAL);
//   - tests can inject faults: FaultFS fails the Nth write or sync with
//     ENOSPC or EIO, optionally tearing the failing write; CrashFS simulates
//     a power cut by undoing every write not covered by a sync.
//
// The package knows nothing about Kafka, batches or offsets, and must not:
// it moves bytes to and from files and reports errors with their errno
// intact (errors.Is(err, unix.ENOSPC) works).
package uring
