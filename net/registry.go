// Package kafkanet owns client connections: gnet v2 event loops, Kafka framing, request
// decode/encode with franz-go's kmsg, per-connection in-order responses, and one handler file
// per API key. It holds no storage logic: handlers reach the log and the metadata through the
// small interfaces in broker.go.
package kafkanet

import (
	"log/slog"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Context describes the request being handled.
type Context struct {
	conn          *connection // nil in tests that build a Context by hand
	RemoteAddr    string
	ClientID      string
	Key           int16
	Version       int16
	CorrelationID int32
	Log           *slog.Logger // carries the client address and API
}

// ConnID identifies the connection the request came on: unique within the Server, never
// reused (0: no connection).
func (c *Context) ConnID() uint64 {
	if c.conn == nil {
		return 0
	}
	return c.conn.id
}

// AtConnEnd makes f run once the request's connection is closed, on its request goroutine,
// after every handler of the connection has returned; a later call replaces f. f may block
// briefly (it holds up only the end of that goroutine, and Server.Stop). Callable from the
// handler only (not from respond on another goroutine).
func (c *Context) AtConnEnd(f func()) {
	if c.conn != nil {
		c.conn.atEnd = f
	}
}

// HandleFunc handles one decoded request. Handlers of one connection are called one at a time,
// in the order the requests arrived, on that connection's request goroutine (never on an event
// loop), so they may block briefly. A handler calls respond exactly once, now or later from any
// goroutine; respond(nil) sends nothing (acks=0 produce). Responses leave the connection in
// request order whatever order respond is called in.
type HandleFunc func(c *Context, req kmsg.Request, respond func(kmsg.Response))

// API is one Kafka API the broker handles, with the versions it supports.
type API struct {
	Key        int16
	MinVersion int16
	MaxVersion int16
	Handle     HandleFunc
}

// apiHandler is one API as its file registers it: its key, its versions, and how to make its
// HandleFunc over the handlers (and the registry, which ApiVersions reads).
type apiHandler struct {
	key      kmsg.Key
	min, max int16
	handler  func(h *Handlers, reg *Registry) HandleFunc
}

// apis is every API the broker serves, filled by the register calls of the handler files.
var apis []apiHandler

// register is called once per API, from its handler file.
func register(key kmsg.Key, minVersion, maxVersion int16, handle func(h *Handlers) HandleFunc) {
	apis = append(apis, apiHandler{key: key, min: minVersion, max: maxVersion,
		handler: func(h *Handlers, _ *Registry) HandleFunc { return handle(h) }})
}

// Registry maps API keys to handlers. ApiVersions is generated from it, so the broker never
// advertises what it does not handle.
type Registry struct {
	apis map[int16]API
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{apis: make(map[int16]API)} }

// Register adds or replaces an API.
func (r *Registry) Register(api API) { r.apis[api.Key] = api }

// Lookup returns the API for key.
func (r *Registry) Lookup(key int16) (API, bool) {
	api, ok := r.apis[key]
	return api, ok
}

// Supports reports whether key is handled at version.
func (r *Registry) Supports(key, version int16) bool {
	api, ok := r.apis[key]
	return ok && version >= api.MinVersion && version <= api.MaxVersion
}

// Versions lists every registered API sorted by key, as ApiVersions reports them.
func (r *Registry) Versions() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(r.apis))
	for _, api := range r.apis {
		out = append(out, kmsg.ApiVersionsResponseApiKey{ApiKey: api.Key, MinVersion: api.MinVersion, MaxVersion: api.MaxVersion})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
