package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Bounds on decompression: the guard against decompression bombs, apart
// from max.message.bytes (which Kafka, and Validate, check against the batch
// as sent, compressed). Records may decompress to at most MaxDecompressRatio
// times the compressed size, but never less than MinDecompressLimit (so
// small batches of very repetitive data pass: a 3 KiB zstd batch of 3 MiB
// of JSON is a normal batch) nor more than MaxDecompressedBytes. Beyond that
// the batch is refused with ErrDecompressedTooLarge before the output grows
// further.
const (
	MaxDecompressRatio   = 64
	MaxDecompressedBytes = 256 << 20
	MinDecompressLimit   = 16 << 20

	// maxZstdWindow bounds the window a zstd frame may ask for, which the
	// streaming decoder allocates up front. 8 MiB covers levels up to 19
	// (the most a standard level asks for); "ultra" levels 20-22 ask for
	// more and are refused as corrupt. Decoders that served a frame with a
	// window beyond pooledZstdWindow are not kept, so the free list does not
	// pin big windows.
	maxZstdWindow    = 8 << 20
	pooledZstdWindow = 2 << 20

	// xerialBlockSize is the block size the Java client's snappy stream
	// uses; Kafka brokers write the same.
	xerialBlockSize = 32 << 10

	// maxPooledBuf keeps huge buffers out of the pools.
	maxPooledBuf = 8 << 20
)

// decompressLimit is the most compressed bytes of size n may decode to.
func decompressLimit(n int) int {
	if n >= MaxDecompressedBytes/MaxDecompressRatio {
		return MaxDecompressedBytes
	}
	return max(n*MaxDecompressRatio, MinDecompressLimit)
}

// xerialMagic starts a xerial-framed snappy stream.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16 // magic, int32 version, int32 compatible version

var (
	gzipReaders sync.Pool // *gzip.Reader
	lz4Readers  sync.Pool // *lz4.Reader
	// zstdReaders is a bounded free list rather than a sync.Pool: a zstd
	// decoder is costly to build, and a pool would drop them at every other
	// GC, which a busy broker runs often. Beyond its capacity decoders are
	// simply dropped; with concurrency 1 they own no goroutines.
	zstdReaders = make(chan *zstd.Decoder, 4*runtime.GOMAXPROCS(0))
	byteReaders = sync.Pool{New: func() any { return new(bytes.Reader) }}
)

func getByteReader(src []byte) *bytes.Reader {
	br := byteReaders.Get().(*bytes.Reader)
	br.Reset(src)
	return br
}

func putByteReader(br *bytes.Reader) {
	br.Reset(nil) // do not keep the batch alive from the pool
	byteReaders.Put(br)
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// decompress appends the decompressed form of src to dst, refusing output
// beyond limit bytes with ErrDecompressedTooLarge and bad input with ErrCorrupt.
func decompress(dst, src []byte, c Codec, limit int) ([]byte, error) {
	switch c {
	case CodecNone:
		if len(src) > limit {
			return dst, fmt.Errorf("%w: %d record bytes exceed %d", ErrDecompressedTooLarge, len(src), limit)
		}
		return append(dst, src...), nil
	case CodecGzip:
		return decompressGzip(dst, src, limit)
	case CodecSnappy:
		if len(src) >= xerialHeaderSize && bytes.HasPrefix(src, xerialMagic) {
			return decompressXerial(dst, src, limit)
		}
		return decompressSnappyBlock(dst, src, limit)
	case CodecLZ4:
		return decompressLZ4(dst, src, limit)
	case CodecZstd:
		return decompressZstd(dst, src, limit)
	}
	return dst, corruptf("unknown compression codec %d", int8(c))
}

// readBounded appends everything r yields to dst, failing once more than
// limit bytes were appended.
func readBounded(dst []byte, r io.Reader, limit int, guess int) ([]byte, error) {
	start := len(dst)
	if guess > limit {
		guess = limit
	}
	dst = slices.Grow(dst, guess)
	for {
		if len(dst) == cap(dst) {
			if len(dst)-start > limit {
				return dst, fmt.Errorf("%w: records decompress to more than %d bytes", ErrDecompressedTooLarge, limit)
			}
			// Grow, but never past limit+1: one byte more proves the excess.
			grow := cap(dst) - start
			if grow < 512 {
				grow = 512
			}
			if rest := limit + 1 - (len(dst) - start); grow > rest {
				grow = rest
			}
			dst = slices.Grow(dst, grow)
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst, fmt.Errorf("%w: records decompress to more than %d bytes", ErrDecompressedTooLarge, limit)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// guessSize is the first buffer size to try for decompressing n bytes.
func guessSize(n int) int { return 4*n + 512 }

func decompressGzip(dst, src []byte, limit int) ([]byte, error) {
	br := getByteReader(src)
	defer putByteReader(br)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(br)
	} else {
		err = zr.Reset(br)
	}
	if err != nil {
		return dst, corruptf("gzip: %v", err)
	}
	defer gzipReaders.Put(zr)
	dst, err = readBounded(dst, zr, limit, guessSize(len(src)))
	if err != nil {
		if errors.Is(err, ErrDecompressedTooLarge) {
			return dst, err
		}
		return dst, corruptf("gzip: %v", err)
	}
	return dst, nil
}

func decompressLZ4(dst, src []byte, limit int) ([]byte, error) {
	br := getByteReader(src)
	defer putByteReader(br)
	zr, _ := lz4Readers.Get().(*lz4.Reader)
	if zr == nil {
		zr = lz4.NewReader(br)
	} else {
		zr.Reset(br)
	}
	defer lz4Readers.Put(zr)
	dst, err := readBounded(dst, zr, limit, guessSize(len(src)))
	if err != nil {
		if errors.Is(err, ErrDecompressedTooLarge) {
			return dst, err
		}
		return dst, corruptf("lz4: %v", err)
	}
	return dst, nil
}

func decompressZstd(dst, src []byte, limit int) ([]byte, error) {
	br := getByteReader(src)
	defer putByteReader(br)
	var zr *zstd.Decoder
	select {
	case zr = <-zstdReaders:
	default:
	}
	var err error
	if zr == nil {
		// Concurrency 1 decodes synchronously in the calling goroutine.
		zr, err = zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecoderMaxMemory(MaxDecompressedBytes))
		if err != nil {
			return dst, fmt.Errorf("batch: zstd decoder: %v", err)
		}
	} else if err = zr.Reset(br); err != nil {
		return dst, corruptf("zstd: %v", err)
	}
	dst, err = readBounded(dst, zr, limit, guessSize(len(src)))
	// Drop the reference to src before pooling the decoder.
	_ = zr.Reset(nil)
	var fh zstd.Header
	if fh.Decode(src) == nil && fh.WindowSize <= pooledZstdWindow {
		select {
		case zstdReaders <- zr:
		default:
		}
	}
	if err != nil {
		if errors.Is(err, ErrDecompressedTooLarge) {
			return dst, err
		}
		return dst, corruptf("zstd: %v", err)
	}
	return dst, nil
}

func decompressSnappyBlock(dst, src []byte, limit int) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return dst, corruptf("snappy: %v", err)
	}
	if n > limit {
		return dst, fmt.Errorf("%w: snappy block decodes to %d bytes, limit %d", ErrDecompressedTooLarge, n, limit)
	}
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	// DecodeStrict refuses s2 extensions: what we accept, every snappy
	// consumer must be able to read.
	out, err := snappy.DecodeStrict(dst[start:], src)
	if err != nil {
		return dst[:start], corruptf("snappy: %v", err)
	}
	if len(out) != n || (n > 0 && &out[0] != &dst[start]) {
		return dst[:start], corruptf("snappy: decoded %d bytes, header says %d", len(out), n)
	}
	return dst, nil
}

// decompressXerial decodes xerial framing: a header, then blocks of a big
// endian int32 length and a raw snappy block. Like the Java stream it also
// accepts a header again between blocks (concatenated streams).
func decompressXerial(dst, src []byte, limit int) ([]byte, error) {
	start := len(dst)
	p := xerialHeaderSize
	for p < len(src) {
		if len(src)-p >= xerialHeaderSize && bytes.HasPrefix(src[p:], xerialMagic) {
			p += xerialHeaderSize
			continue
		}
		if len(src)-p < 4 {
			return dst, corruptf("snappy: xerial: %d trailing bytes at %d", len(src)-p, p)
		}
		n := int(int32(binary.BigEndian.Uint32(src[p:])))
		p += 4
		if n < 0 || n > len(src)-p {
			return dst, corruptf("snappy: xerial: block length %d at %d, %d bytes left", n, p-4, len(src)-p)
		}
		var err error
		dst, err = decompressSnappyBlock(dst, src[p:p+n], limit-(len(dst)-start))
		if err != nil {
			return dst, err
		}
		p += n
	}
	return dst, nil
}

var (
	gzipWriters sync.Pool // *gzip.Writer
	lz4Writers  sync.Pool // *lz4.Writer

	zstdEncoderOnce sync.Once
	zstdEncoder     *zstd.Encoder
)

// sliceWriter appends to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// compress appends src compressed with c to dst. Compressing into memory
// cannot fail, so an error here is a bug and panics.
func compress(dst, src []byte, c Codec) []byte {
	switch c {
	case CodecNone:
		return append(dst, src...)
	case CodecGzip:
		w := &sliceWriter{b: dst}
		zw, _ := gzipWriters.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(w)
		} else {
			zw.Reset(w)
		}
		mustWrite(zw, src)
		zw.Reset(nil)
		gzipWriters.Put(zw)
		return w.b
	case CodecSnappy:
		return appendXerial(dst, src)
	case CodecLZ4:
		w := &sliceWriter{b: dst}
		zw, _ := lz4Writers.Get().(*lz4.Writer)
		if zw == nil {
			zw = lz4.NewWriter(w)
			// 64 KiB blocks, as the Java client writes them.
			if err := zw.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
				panic("batch: lz4 options: " + err.Error())
			}
		} else {
			zw.Reset(w)
		}
		mustWrite(zw, src)
		zw.Reset(nil)
		lz4Writers.Put(zw)
		return w.b
	case CodecZstd:
		zstdEncoderOnce.Do(func() {
			var err error
			zstdEncoder, err = zstd.NewWriter(nil,
				zstd.WithEncoderLevel(zstd.SpeedDefault),
				zstd.WithWindowSize(1<<20))
			if err != nil {
				panic("batch: zstd encoder: " + err.Error())
			}
		})
		return zstdEncoder.EncodeAll(src, dst)
	}
	panic(fmt.Sprintf("batch: unknown codec %d", int8(c)))
}

func mustWrite(w io.WriteCloser, p []byte) {
	if _, err := w.Write(p); err != nil {
		panic("batch: compress: " + err.Error())
	}
	if err := w.Close(); err != nil {
		panic("batch: compress: " + err.Error())
	}
}

// appendXerial appends src as a xerial-framed snappy stream, the framing the
// Java client and Kafka brokers write, which every client reads.
func appendXerial(dst, src []byte) []byte {
	dst = append(dst, xerialMagic...)
	dst = binary.BigEndian.AppendUint32(dst, 1) // version
	dst = binary.BigEndian.AppendUint32(dst, 1) // compatible version
	for len(src) > 0 {
		chunk := src[:min(len(src), xerialBlockSize)]
		src = src[len(chunk):]
		need := snappy.MaxEncodedLen(len(chunk))
		at := len(dst)
		dst = append(dst, make([]byte, 4+need)...)
		enc := snappy.Encode(dst[at+4:], chunk)
		binary.BigEndian.PutUint32(dst[at:], uint32(len(enc)))
		dst = dst[:at+4+len(enc)]
	}
	return dst
}
