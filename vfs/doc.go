// Package vfs is the file system every storage component of Ringtail goes
// through: the small File and FS interfaces (fs.go), the OS implementation
// (OSFS: pwrite/pread + fdatasync through golang.org/x/sys/unix), and the
// durable helpers built on them: MkdirAllDurable (a new directory survives a
// power cut), WriteFileSynced, and WriteFileAtomic, the one writer of every
// small state file (WAL checkpoint, log start offset, metadata, leader-epoch
// and high-watermark checkpoints).
//
// The test doubles live in sub-packages that the broker binary never
// imports: vfs/crashfs (a power cut at any operation), vfs/errorfs (chosen
// operations fail with chosen errors) and vfs/memfs (everything in memory,
// for in-process multi-broker tests).
//
// The package knows nothing about Kafka, the WAL or partitions, and reports
// errors with their errno intact (errors.Is(err, unix.ENOSPC) works).
package vfs
