package wal

import (
	"errors"
	"fmt"

	"github.com/ringtail/ringtail/uring"
	"github.com/ringtail/ringtail/vfs"
)

// WAL I/O modes (the wal.io setting).
const (
	IOAuto     = "auto"     // io_uring when the kernel allows it, else portable (logged once)
	IOUring    = "uring"    // io_uring or fail
	IOPortable = "portable" // pwrite + fdatasync through the FS
)

// walDevice writes a cycle's buffer at off in the current file and makes it
// durable. Both implementations write the same bytes at the same offsets.
type walDevice interface {
	name() string
	use(f vfs.File, path string) error // switch to a new current file
	writeSync(buf []byte, off int64) error
	close() error
}

// openDevice picks the writer implementation for opts.IO.
func (w *Log) openDevice() (walDevice, error) {
	_, osfs := w.fs.(vfs.OSFS)
	switch w.opts.IO {
	case IOPortable:
		w.mode = "portable"
		return &portableDevice{}, nil
	case IOUring, IOAuto:
		if !osfs {
			if w.opts.IO == IOUring {
				return nil, errors.New("wal: wal.io=uring needs the OS file system")
			}
			w.mode, w.reason = "portable", "file system is not the OS one (tests)"
			return &portableDevice{}, nil
		}
		d, err := newUringDevice(w.opts.Dir, w.log)
		if err != nil {
			if w.opts.IO == IOUring || !errors.Is(err, uring.ErrUnavailable) {
				return nil, err
			}
			w.mode, w.reason = "portable", err.Error()
			w.log.Warn("wal: io_uring unavailable, the wal uses the portable pwrite+fdatasync writer", "err", err)
			return &portableDevice{}, nil
		}
		w.mode = "uring"
		if d.direct {
			w.mode = "uring+direct"
		}
		return d, nil
	}
	return nil, fmt.Errorf("wal: unknown wal.io %q (auto, uring or portable)", w.opts.IO)
}

// portableDevice writes with pwrite and fdatasync through the FS.
type portableDevice struct{ f vfs.File }

func (d *portableDevice) name() string { return "portable" }

func (d *portableDevice) use(f vfs.File, _ string) error {
	d.f = f
	return nil
}

func (d *portableDevice) writeSync(buf []byte, off int64) error {
	if _, err := d.f.WriteAt(buf, off); err != nil {
		return err
	}
	return d.f.Datasync()
}

func (d *portableDevice) close() error { return nil }
