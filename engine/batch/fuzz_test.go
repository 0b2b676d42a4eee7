package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/klauspost/compress/snappy"
)

// smallRecords are the records of the generated seeds: small enough to keep
// the corpus readable, varied enough to reach every field.
func smallRecords() []Record {
	return []Record{
		{OffsetDelta: 0, TimestampDelta: 0, Key: []byte("k"), Value: []byte("hello ringtail")},
		{OffsetDelta: 1, TimestampDelta: 3, Key: nil, Value: bytes.Repeat([]byte("ab"), 40),
			Headers: []RecordHeader{{Key: "trace", Value: []byte("1")}, {Key: "n", Value: nil}}},
		{OffsetDelta: 2, TimestampDelta: -1, Key: []byte{}, Value: nil},
	}
}

func seedBatches() [][]byte {
	h := testHeader()
	var seeds [][]byte
	for _, c := range allCodecs {
		seeds = append(seeds, Build(h, smallRecords(), c))
	}
	return seeds
}

func isSentinel(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupportedMagic) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDecompressedTooLarge)
}

func FuzzValidate(f *testing.F) {
	for _, s := range seedBatches() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkValidate(t, b)
		if len(b) >= HeaderSize {
			// Mutations rarely keep the CRC and length right; fix them on a
			// copy so the fuzzer also reaches decompression and records.
			fixed := append([]byte(nil), b...)
			binary.BigEndian.PutUint32(fixed[offLength:], uint32(len(fixed)-12))
			fixCRC(fixed)
			checkValidate(t, fixed)
		}
	})
}

func checkValidate(t *testing.T, b []byte) {
	err := Validate(b, 0)
	serr := ValidateStored(b)
	recs, rerr := Records(b)
	// Records checks what ValidateStored does; a batch valid for produce is valid stored, and
	// one valid only stored has what compaction leaves: rising deltas up to the last one.
	if (serr == nil) != (rerr == nil) {
		t.Fatalf("ValidateStored = %v but Records = %v", serr, rerr)
	}
	if err == nil && serr != nil {
		t.Fatalf("Validate accepts what ValidateStored refuses: %v", serr)
	}
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if serr != nil && !isSentinel(serr) {
			t.Fatalf("stored error %v wraps no sentinel", serr)
		}
		if serr == nil {
			h, _ := ParseHeader(b)
			prev := int32(-1)
			for _, r := range recs {
				if r.OffsetDelta <= prev || r.OffsetDelta > h.LastOffsetDelta {
					t.Fatalf("stored batch with offset delta %d after %d, last %d", r.OffsetDelta, prev, h.LastOffsetDelta)
				}
				prev = r.OffsetDelta
			}
		}
		return
	}
	h, err := ParseHeader(b)
	if err != nil || int(h.NumRecords) != len(recs) || h.Size() != len(b) {
		t.Fatalf("valid batch: header %+v, %d records, %v", h, len(recs), err)
	}
	if err := Validate(b, len(b)); err != nil {
		t.Fatalf("Validate with max = len: %v", err)
	}
	// Whatever we accept we can re-encode with any codec, losslessly.
	for _, to := range allCodecs {
		out, err := Recompress(b, to)
		if err != nil {
			t.Fatalf("Recompress to %v: %v", to, err)
		}
		if err := Validate(out, 0); err != nil {
			t.Fatalf("Recompress to %v: invalid result: %v", to, err)
		}
		got, err := Records(out)
		if err != nil || !reflect.DeepEqual(got, recs) {
			t.Fatalf("Recompress to %v changed the records (%v)", to, err)
		}
	}
	rebuilt := Build(h, recs, h.Codec())
	if err := Validate(rebuilt, 0); err != nil {
		t.Fatalf("Build of decoded records: %v", err)
	}
}

func FuzzSplit(f *testing.F) {
	seeds := seedBatches()
	f.Add(bytes.Join(seeds, nil))
	f.Add(seeds[0])
	f.Add(seeds[0][:HeaderSize+3])
	f.Fuzz(func(t *testing.T, records []byte) {
		batches, err := Split(records)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !bytes.Equal(bytes.Join(batches, nil), records) {
			t.Fatal("batches do not add up to the input")
		}
		for _, b := range batches {
			h, err := ParseHeader(b)
			if err != nil || h.Size() != len(b) || h.Magic != 2 {
				t.Fatalf("batch %+v of %d bytes: %v", h, len(b), err)
			}
			// Split's framing must be enough for Validate not to panic.
			_ = Validate(b, 0)
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus: real franz-go
// producer batches and Build batches for every codec, a raw-block snappy
// batch as librdkafka sends and a few near misses. Run with RINGTAIL_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("RINGTAIL_WRITE_CORPUS") == "" {
		t.Skip("set RINGTAIL_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := testHeader()
	var all [][]byte
	for _, c := range allCodecs {
		b := Build(h, smallRecords(), c)
		write("FuzzValidate", "build-"+c.String(), b)
		all = append(all, b)
		real := produceWithFranz(t, c, 6)
		write("FuzzValidate", "franz-"+c.String(), real[0])
		all = append(all, real[0])
	}
	ctl := h
	ctl.Attributes = attrTransactional | attrControl
	write("FuzzValidate", "control", Build(ctl, []Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 5}}}, CodecNone))
	write("FuzzValidate", "empty", Build(h, nil, CodecGzip))

	// librdkafka sends snappy as one raw block, without xerial framing.
	raw := Build(h, smallRecords(), CodecNone)
	x := append(raw[:HeaderSize:HeaderSize], snappy.Encode(nil, raw[HeaderSize:])...)
	x[offAttributes+1] = byte(CodecSnappy)
	binary.BigEndian.PutUint32(x[offLength:], uint32(len(x)-12))
	fixCRC(x)
	if err := Validate(x, 0); err != nil {
		t.Fatal(err)
	}
	write("FuzzValidate", "snappy-raw-block", x)

	badDelta := Build(h, []Record{{OffsetDelta: 0}, {OffsetDelta: 0}}, CodecLZ4)
	write("FuzzValidate", "bad-offset-delta", badDelta)
	badCRC := Build(h, smallRecords(), CodecZstd)
	badCRC[len(badCRC)-1] ^= 1
	write("FuzzValidate", "bad-crc", badCRC)

	write("FuzzSplit", "several", bytes.Join(all, nil))
	write("FuzzSplit", "partial", bytes.Join(all, nil)[:len(all[0])+40])
}
