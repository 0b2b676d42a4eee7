package replication

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/vfs"
)

// sendSpan writes sp's batches to conn. With a segment file that has a descriptor (the OS file
// system) they go with sendfile(2) at the span's position: from the page cache to the socket,
// never through user space, whether the bytes were appended a moment ago or are cold catch-up.
// Otherwise (an in-memory file system in tests) they are read into buf and written: one copy,
// which copied reports.
func sendSpan(conn *net.TCPConn, sp engine.Span, buf *[]byte) (copied bool, err error) {
	if d, ok := sp.File.(vfs.Descriptor); ok {
		return false, sendfile(conn, d, sp.Pos, sp.Len)
	}
	if int64(cap(*buf)) < sp.Len {
		*buf = make([]byte, sp.Len)
	}
	b := (*buf)[:sp.Len]
	if _, err := sp.File.ReadAt(b, sp.Pos); err != nil && !errors.Is(err, io.EOF) {
		return true, err
	}
	_, err = conn.Write(b)
	return true, err
}

// sendfile sends n bytes of file from pos through conn's descriptor, waiting for the socket to
// take them (the connection's write deadline applies).
func sendfile(conn *net.TCPConn, file vfs.Descriptor, pos, n int64) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	off := pos
	end := pos + n
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		for off < end {
			var sent int
			var err error
			cerr := file.Control(func(fd uintptr) {
				sent, err = unix.Sendfile(int(sock), int(fd), &off, int(min(end-off, 1<<30)))
			})
			switch {
			case cerr != nil:
				serr = cerr
				return true
			case err == unix.EAGAIN:
				return false // wait until the socket takes more
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case sent == 0:
				serr = fmt.Errorf("replication: sendfile sent nothing at %d of %d (the file is shorter)", off, end)
				return true
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}

// writeMore writes b to conn with MSG_MORE: the kernel holds it back for what follows (a data
// frame's batches, sent with sendfile), so header and batches leave in full segments rather
// than as a small packet first (TCP_NODELAY is on). Without a descriptor it is a plain write.
func writeMore(conn *net.TCPConn, b []byte) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		_, err = conn.Write(b)
		return err
	}
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		for len(b) > 0 {
			n, err := unix.SendmsgN(int(sock), b, nil, nil, unix.MSG_MORE)
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			}
			b = b[n:]
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}
