// Package kclient sends Kafka requests from one Ringtail broker to another over the other's
// Kafka listener, one at a time on one connection: the broker's heartbeats and controlled
// shutdown, and its partition leaders' ISR changes (AlterPartition), to the controller. Clients
// use franz-go; a broker needs only this, so the broker binary carries kmsg and no client
// library.
package kclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxResponse bounds a response frame: the broker-to-broker answers are small.
const maxResponse = 16 << 20

// Client is a connection (made on first use, remade after an error) to one address.
type Client struct {
	clientID string

	mu   sync.Mutex // one request at a time
	addr string
	conn net.Conn
	corr int32
}

// New returns a client of the listener at addr; clientID names this broker in the other's log.
func New(addr, clientID string) *Client { return &Client{addr: addr, clientID: clientID} }

// SetAddr points the client at another address (a new controller); the open connection, if
// to another address, is closed.
func (c *Client) SetAddr(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if addr != c.addr {
		c.closeLocked()
		c.addr = addr
	}
}

// Addr is the address requests go to.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	return nil
}

func (c *Client) closeLocked() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// Request sends req at the version it carries (both ends are Ringtail, so the sender picks a
// version it knows the receiver registers) and returns the decoded response. Any error closes
// the connection; the next request dials again. ctx bounds the whole exchange.
func (c *Client) Request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.requestLocked(ctx, req)
	if err != nil {
		c.closeLocked()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("kclient: %s to %s: %w", kmsg.NameForKey(req.Key()), c.addr, err)
	}
	return resp, nil
}

func (c *Client) requestLocked(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// ctx ending early (its caller gave up, or cancelled it) ends the exchange too: the
	// connection is then closed by Request.
	conn := c.conn
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
	c.corr++
	corr := c.corr
	// Request header v1 (v2 with a tag section for flexible requests), then the body.
	buf := make([]byte, 4, 64)
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.Key()))
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.GetVersion()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(corr))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(c.clientID)))
	buf = append(buf, c.clientID...)
	if req.IsFlexible() {
		buf = append(buf, 0) // no tagged fields
	}
	buf = req.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	if _, err := c.conn.Write(buf); err != nil {
		return nil, err
	}

	var size [4]byte
	if _, err := io.ReadFull(c.conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > maxResponse {
		return nil, fmt.Errorf("response of %d bytes", n)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(c.conn, frame); err != nil {
		return nil, err
	}
	if got := int32(binary.BigEndian.Uint32(frame)); got != corr {
		return nil, fmt.Errorf("response to correlation id %d, want %d", got, corr)
	}
	body := frame[4:]
	resp := req.ResponseKind()
	// Response header v1 (flexible responses but ApiVersions') carries a tag section.
	if req.IsFlexible() && req.Key() != 18 {
		if len(body) == 0 || body[0] != 0 {
			return nil, errors.New("response header with tagged fields")
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding the response: %w", err)
	}
	return resp, nil
}
