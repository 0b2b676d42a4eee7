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

// maxRoundIovecs is how many buffers a round gathers before it sends (one subscription may add
// a few hundred: a header and every append the leader kept for it).
const maxRoundIovecs = 1000

// iovMax is the kernel's limit of iovecs per sendmsg (UIO_MAXIOV): more fail with EMSGSIZE,
// so a flush sends at most this many at a time.
const iovMax = 1024

// maxRoundBytes is how much a round gathers before it sends: past it, sending what is there
// lets the follower start on it.
const maxRoundBytes = 4 << 20

// round gathers one writer round's frames — headers, answers and the batches a leader still
// holds in memory — so that they leave in one sendmsg (a writev) instead of a system call
// each. Segment spans go with sendfile, after what was gathered before them.
type writeRound struct {
	conn  *net.TCPConn
	iov   [][]byte
	bytes int
	hdrs  []byte // the round's frame headers back to back; iov slices point into it
}

// frame adds a frame built by appendFrame (an appendHW, an appendDataHeader, …) to the round.
func (r *writeRound) frame(appendFrame func([]byte) []byte) {
	start := len(r.hdrs)
	r.hdrs = appendFrame(r.hdrs)
	r.add(r.hdrs[start:len(r.hdrs):len(r.hdrs)])
}

// add adds bytes that stay unchanged until the round is sent.
func (r *writeRound) add(b []byte) {
	r.iov = append(r.iov, b)
	r.bytes += len(b)
}

// full says the round should be sent before more is added.
func (r *writeRound) full() bool { return len(r.iov) >= maxRoundIovecs || r.bytes >= maxRoundBytes }

// flush sends what the round gathered; with more, MSG_MORE asks the kernel to hold a short
// tail back for what follows (a span's sendfile), so that a data frame's header does not leave
// as a small packet of its own (TCP_NODELAY is on).
func (r *writeRound) flush(more bool) error {
	if len(r.iov) == 0 {
		return nil
	}
	iov := r.iov
	defer func() {
		clear(r.iov)
		r.iov, r.bytes, r.hdrs = r.iov[:0], 0, r.hdrs[:0]
	}()
	rc, err := r.conn.SyscallConn()
	if err != nil {
		_, err = (*net.Buffers)(&iov).WriteTo(r.conn)
		return err
	}
	flags := 0
	if more {
		flags = unix.MSG_MORE
	}
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		for len(iov) > 0 {
			n, err := unix.SendmsgBuffers(int(sock), iov[:min(len(iov), iovMax)], nil, nil, flags)
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			}
			for n > 0 && n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
			}
			if n > 0 {
				iov[0] = iov[0][n:]
			}
			for len(iov) > 0 && len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}
