package replication

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
)

// TestWriteRoundManyBuffers: a round of more buffers than one sendmsg may carry (the kernel's
// 1024 iovecs; a follower catching up from several partitions' kept appends gathers that many)
// arrives whole and in order.
func TestWriteRoundManyBuffers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := &writeRound{conn: conn.(*net.TCPConn)}
	var want bytes.Buffer
	for i := range 3000 {
		b := []byte(fmt.Sprintf("buffer %d;", i))
		want.Write(b)
		if i%2 == 0 {
			r.add(b)
		} else {
			r.frame(func(h []byte) []byte { return append(h, b...) })
		}
	}
	if err := r.flush(false); err != nil {
		t.Fatalf("flushing %d buffers: %v", 3000, err)
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d in order", len(b), want.Len())
	}
}
