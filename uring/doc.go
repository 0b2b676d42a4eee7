// Package uring owns Ringtail's file I/O. Every write, read, sync, truncate
// and directory operation the storage engine performs goes through the small
// File and FS interfaces (fs.go), so that
//
//   - the portable implementation, OSFS (pwrite/pread + fdatasync through
//     golang.org/x/sys/unix), runs wherever io_uring is unavailable, for
//     example under Docker's default seccomp profile;
//   - an io_uring implementation can replace it: the ring binding lives in
//     ring*.go, and the FS/WAL writer on top of it (direct I/O, linked
//     write→fdatasync chains) arrives in a later issue;
//   - tests can inject faults: FaultFS fails the Nth write or sync with
//     ENOSPC or EIO, optionally tearing the failing write.
//
// The package knows nothing about Kafka, batches or offsets, and must not:
// it moves bytes to and from files and reports errors with their errno
// intact (errors.Is(err, unix.ENOSPC) works).
package uring
