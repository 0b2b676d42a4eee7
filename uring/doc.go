// Package uring is Ringtail's io_uring binding and nothing more: ring setup
// and mapping (ring_linux.go), submission and completion queue entries with
// their ABI checked against the kernel's layout (ring.go), registered,
// page-aligned off-heap buffers and iovec arrays (ring_buffers_linux.go),
// the opcode probe, and a direct-I/O probe for a directory.
//
// It knows nothing of files beyond descriptors, nor of the WAL (package wal
// drives a ring per lane) or Kafka, and must not: it moves bytes between
// buffers and descriptors and reports errors with their errno intact
// (errors.Is(err, unix.ENOSPC) works). Its pitfalls are listed in
// ../shared/DESIGN.md ("Notes for uring/").
package uring
