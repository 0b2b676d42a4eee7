// Package fetchsession keeps Kafka's incremental fetch sessions (KIP-227) as a pure state
// machine: no sockets, no clock, no goroutines. net/fetch.go drives it: Begin with each Fetch
// request (it says what to read), Finish with what was read (it says what to answer).
//
// The rules are Kafka's (FetchSession.scala, FetchMetadata.java), written here so that a
// client sees the same answers from Ringtail as from Kafka:
//
//	session id  epoch  meaning
//	0           -1     sessionless full fetch (also every request below v7)
//	0 or N      0      full fetch that starts a new session (closing N first); the answer
//	                   carries the new id, or 0 when the cache has no room
//	N           -1     close session N, then a sessionless full fetch
//	N           E > 0  incremental fetch in session N at epoch E: the request lists only the
//	                   partitions added or changed and forgets those removed; the answer lists
//	                   only the partitions with records, a changed high watermark, last stable
//	                   offset or log start, or an error. N unknown: FETCH_SESSION_ID_NOT_FOUND;
//	                   E not the session's next epoch: INVALID_FETCH_SESSION_EPOCH
//
// The cache holds at most MaxEntries sessions (max.incremental.fetch.session.cache.slots,
// 1000 by default). When full, a new session takes the place of one unused for longer than the
// eviction age (120 s); failing that, of the least valuable evictable session — not privileged
// (from a follower), then smallest — when that is less valuable than the new one; failing both,
// the fetch goes on without a session (session id 0), which clients accept.
//
// Lock order: Cache.mu and Session.mu are both leaves: Begin and Finish release one before they
// take the other (a session's partitions are counted under Session.mu and recorded under
// Cache.mu afterwards), except in create, where the new session's Session.mu is not needed yet
// because nobody else can see the session.
package fetchsession

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"time"
)

// Session ids and epochs with a meaning of their own (FetchMetadata.java).
const (
	InvalidSessionID int32 = 0
	InitialEpoch     int32 = 0
	FinalEpoch       int32 = -1
)

// DefaultMaxEntries is Kafka's max.incremental.fetch.session.cache.slots.
const DefaultMaxEntries = 1000

// DefaultEvictionAge is Kafka's MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS: a session unused for
// longer may always be evicted for a new one; a younger one only for a more valuable one.
const DefaultEvictionAge = 120 * time.Second

// Errors a Begin answers with; net maps them to the Kafka error codes of their names.
var (
	ErrSessionIDNotFound = errors.New("fetchsession: FETCH_SESSION_ID_NOT_FOUND")
	ErrInvalidEpoch      = errors.New("fetchsession: INVALID_FETCH_SESSION_EPOCH")
	// ErrTopicIDMismatch: a session started with topic ids (Fetch v13+) continued without, or
	// the other way round (FETCH_SESSION_TOPIC_ID_ERROR).
	ErrTopicIDMismatch = errors.New("fetchsession: FETCH_SESSION_TOPIC_ID_ERROR")
)

// Key names one partition of a session: by topic id in sessions of Fetch v13+, by topic name
// below (the other field is zero).
type Key struct {
	TopicID   [16]byte
	Topic     string
	Partition int32
}

// Fetch is what a request asks of one partition; an incremental request sends it again when
// it changes (a new fetch offset, mostly) and the session keeps the last one.
type Fetch struct {
	Offset             int64
	MaxBytes           int32
	CurrentLeaderEpoch int32
	LastFetchedEpoch   int32
	LogStartOffset     int64 // a follower's; -1 from consumers
}

// PartitionFetch is one partition to read.
type PartitionFetch struct {
	Key
	Fetch
}

// Request is the session part of one Fetch request.
type Request struct {
	SessionID    int32
	Epoch        int32
	UsesTopicIDs bool // Fetch v13+
	Privileged   bool // from a replica (replica id >= 0)
	Partitions   []PartitionFetch
	Forgotten    []Key
}

// Result is what the read of one partition found, as far as the session compares it.
type Result struct {
	HighWatermark    int64
	LastStableOffset int64
	LogStartOffset   int64
	RecordBytes      int
	Error            bool // any partition-level error, or a diverging epoch: always answered
}

// Mode says how a fetch relates to the session cache.
type Mode int

const (
	Sessionless Mode = iota // answer every partition, session id 0
	Full                    // answer every partition; Finish may start a session
	Incremental             // answer what changed in the session's partitions
	Failed                  // answer Err only
)

// Context is one fetch between Begin and Finish.
type Context struct {
	Mode Mode
	Err  error // for Failed
	// Partitions are what to read, in order: the request's for Sessionless and Full, the
	// session's (after the request's changes) for Incremental.
	Partitions []PartitionFetch

	req     Request
	session *Session // Incremental
	// cached are the session's entries of Partitions (Incremental), so Finish needs no lookup.
	cached []*cachedPartition
	// Added, Updated and Removed count the request's changes to an incremental session (for
	// logs and tests).
	Added, Updated, Removed int
}

// cachedPartition is a session's view of one partition: what was last asked and last answered.
type cachedPartition struct {
	key Key
	Fetch
	highWatermark    int64
	lastStableOffset int64
	logStartOffset   int64
	removed          bool // forgotten; Session.mu
	moved            bool // returned records in the fetch being finished; Session.mu
}

// Session is one incremental fetch session.
type Session struct {
	id           int32
	privileged   bool
	usesTopicIDs bool
	createdAt    time.Time

	mu sync.Mutex // guards the fields below; a leaf
	// epoch is the epoch the next request must carry.
	epoch int32
	// order is the partitions in fetch order (those that returned records move to the end),
	// parts the same by key.
	order []*cachedPartition
	parts map[Key]*cachedPartition

	// Cache.mu: the values the cache indexes the session by, as of its last touch.
	lastUsed   time.Time
	cachedSize int // -1 until first indexed
}

// Cache is the broker's fetch sessions.
type Cache struct {
	maxEntries  int
	evictionAge time.Duration
	newID       func() int32 // random candidate ids; 0 and ids in use are skipped

	mu        sync.Mutex // a leaf
	sessions  map[int32]*Session
	partsHeld int // partitions over all sessions, as of their last touch
	evictions int64
}

// NewCache returns a cache of at most maxEntries sessions (0: none are kept, every fetch is
// sessionless) whose sessions unused for evictionAge may be evicted for any new one. newID
// draws candidate session ids (random in production, so ids are not guessable from one another
// and do not repeat across restarts).
func NewCache(maxEntries int, evictionAge time.Duration, newID func() int32) *Cache {
	return &Cache{maxEntries: maxEntries, evictionAge: evictionAge, newID: newID, sessions: make(map[int32]*Session)}
}

// Stats is what the cache holds, for metrics.
type Stats struct {
	Sessions   int
	Partitions int
	Evictions  int64
}

// Stats returns the cache's counts.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Sessions: len(c.sessions), Partitions: c.partsHeld, Evictions: c.evictions}
}

// nextEpoch is FetchMetadata.nextEpoch.
func nextEpoch(e int32) int32 {
	switch {
	case e < 0:
		return FinalEpoch
	case e == 1<<31-1:
		return 1
	}
	return e + 1
}

// Begin starts one fetch at now: it closes, checks or updates the session the request names
// and says what to read.
func (c *Cache) Begin(req Request, now time.Time) *Context {
	ctx := &Context{req: req}
	if req.Epoch == InitialEpoch || req.Epoch == FinalEpoch {
		// Any session named in a full fetch is closed.
		if req.SessionID != InvalidSessionID {
			c.remove(req.SessionID)
		}
		ctx.Mode = Full
		if req.Epoch == FinalEpoch {
			ctx.Mode = Sessionless
		}
		ctx.Partitions = req.Partitions
		return ctx
	}
	c.mu.Lock()
	s := c.sessions[req.SessionID]
	c.mu.Unlock()
	if s == nil {
		ctx.Mode, ctx.Err = Failed, ErrSessionIDNotFound
		return ctx
	}
	s.mu.Lock()
	switch {
	case s.epoch != req.Epoch:
		ctx.Mode, ctx.Err = Failed, ErrInvalidEpoch
	case s.usesTopicIDs != req.UsesTopicIDs:
		ctx.Mode, ctx.Err = Failed, ErrTopicIDMismatch
	}
	if ctx.Mode == Failed {
		s.mu.Unlock()
		return ctx
	}
	ctx.Added, ctx.Updated, ctx.Removed = s.update(req.Partitions, req.Forgotten)
	if len(s.parts) == 0 {
		// Kafka's rule: an incremental fetch that empties its session ends it.
		s.mu.Unlock()
		c.remove(s.id)
		ctx.Mode, ctx.Partitions = Sessionless, req.Partitions
		return ctx
	}
	s.epoch = nextEpoch(s.epoch)
	ctx.Mode, ctx.session = Incremental, s
	ctx.Partitions = make([]PartitionFetch, len(s.order))
	ctx.cached = append([]*cachedPartition(nil), s.order...)
	for i, cp := range s.order {
		ctx.Partitions[i] = PartitionFetch{Key: cp.key, Fetch: cp.Fetch}
	}
	s.mu.Unlock()
	c.touch(s, now)
	return ctx
}

// update applies an incremental request's partitions and forgotten partitions. s.mu held.
func (s *Session) update(parts []PartitionFetch, forgotten []Key) (added, updated, removed int) {
	for _, p := range parts {
		if cp, ok := s.parts[p.Key]; ok {
			cp.Fetch = p.Fetch
			updated++
			continue
		}
		cp := &cachedPartition{key: p.Key, Fetch: p.Fetch, highWatermark: -1, lastStableOffset: -1, logStartOffset: -1}
		s.parts[p.Key] = cp
		s.order = append(s.order, cp)
		added++
	}
	gone := 0
	for _, k := range forgotten {
		if cp, ok := s.parts[k]; ok {
			delete(s.parts, k)
			cp.removed = true
			gone++
		}
	}
	if gone > 0 {
		s.order = slices.DeleteFunc(s.order, func(cp *cachedPartition) bool { return cp.removed })
	}
	return added, updated, gone
}

// Finish ends the fetch at now with results, one per ctx.Partitions in their order. It returns
// the session id to answer with and, per partition, whether the answer carries it. A full
// fetch may start a session here (with what was answered as its baseline); an incremental one
// records what it answers and moves the partitions that returned records to the end of the
// session's order, so that under a byte limit the others get their turn next.
func (c *Cache) Finish(ctx *Context, results []Result, now time.Time) (sessionID int32, include []bool) {
	include = make([]bool, len(ctx.Partitions))
	switch ctx.Mode {
	case Failed:
		return InvalidSessionID, include
	case Sessionless:
		for i := range include {
			include[i] = true
		}
		return InvalidSessionID, include
	case Full:
		for i := range include {
			include[i] = true
		}
		s := c.create(ctx.req, results, now)
		if s == nil {
			return InvalidSessionID, include
		}
		return s.id, include
	}
	s := ctx.session
	s.mu.Lock()
	moved := 0
	for i, cp := range ctx.cached {
		if cp.removed {
			continue // forgotten by a later request meanwhile: nothing to compare with
		}
		r := results[i]
		must := r.RecordBytes > 0 || r.Error
		if cp.highWatermark != r.HighWatermark {
			must, cp.highWatermark = true, r.HighWatermark
		}
		if cp.lastStableOffset != r.LastStableOffset {
			must, cp.lastStableOffset = true, r.LastStableOffset
		}
		if cp.logStartOffset != r.LogStartOffset {
			must, cp.logStartOffset = true, r.LogStartOffset
		}
		include[i] = must
		if r.RecordBytes > 0 {
			cp.moved = true
			moved++
		}
	}
	if moved > 0 {
		// One stable pass: the others keep their order, the moved ones follow in theirs.
		kept := make([]*cachedPartition, 0, len(s.order))
		var tail []*cachedPartition
		for _, cp := range s.order {
			if cp.moved {
				cp.moved = false
				tail = append(tail, cp)
			} else {
				kept = append(kept, cp)
			}
		}
		s.order = append(kept, tail...)
	}
	s.mu.Unlock()
	return s.id, include
}

// create starts a session for a full fetch, unless the cache has no room for it.
func (c *Cache) create(req Request, results []Result, now time.Time) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxEntries <= 0 {
		return nil
	}
	if len(c.sessions) >= c.maxEntries && !c.evictOneLocked(req.Privileged, len(req.Partitions), now) {
		return nil
	}
	id := c.newID()
	for id == InvalidSessionID || id < 0 || c.sessions[id] != nil {
		id = c.newID()
	}
	s := &Session{id: id, privileged: req.Privileged, usesTopicIDs: req.UsesTopicIDs, createdAt: now,
		epoch: nextEpoch(InitialEpoch), parts: make(map[Key]*cachedPartition, len(req.Partitions)), cachedSize: -1}
	for i, p := range req.Partitions {
		if _, dup := s.parts[p.Key]; dup {
			continue
		}
		r := results[i]
		cp := &cachedPartition{key: p.Key, Fetch: p.Fetch, highWatermark: r.HighWatermark,
			lastStableOffset: r.LastStableOffset, logStartOffset: r.LogStartOffset}
		s.parts[p.Key] = cp
		s.order = append(s.order, cp)
	}
	c.sessions[id] = s
	c.touchLocked(s, now)
	return s
}

// evictOneLocked makes room for a session of size partitions (FetchSessionCache.tryEvict):
// the session unused the longest goes if it is past the eviction age; otherwise the least
// valuable evictable one, if the new session is worth at least as much. c.mu held.
func (c *Cache) evictOneLocked(privileged bool, size int, now time.Time) bool {
	var stalest *Session
	for _, s := range c.sessions {
		if stalest == nil || s.lastUsed.Before(stalest.lastUsed) || s.lastUsed.Equal(stalest.lastUsed) && s.id < stalest.id {
			stalest = s
		}
	}
	if stalest == nil {
		return false
	}
	if now.Sub(stalest.lastUsed) > c.evictionAge {
		c.evictLocked(stalest)
		return true
	}
	// Evictable for a privileged newcomer: any session not privileged, and privileged ones
	// older than the eviction age; for any other newcomer only sessions older than that. Age
	// is judged as of each session's last use, as Kafka indexes them then.
	var candidates []*Session
	for _, s := range c.sessions {
		old := s.lastUsed.Sub(s.createdAt) > c.evictionAge
		if privileged && (!s.privileged || old) || !privileged && old {
			candidates = append(candidates, s)
		}
	}
	if len(candidates) == 0 {
		return false
	}
	sort.Slice(candidates, func(i, j int) bool { return lessValuable(candidates[i], candidates[j]) })
	least := candidates[0]
	// A tie keeps the cached session (Kafka's new key sorts below an equal one).
	if worth(privileged, size) <= worth(least.privileged, least.cachedSize) {
		return false
	}
	c.evictLocked(least)
	return true
}

// worth orders sessions for eviction as Kafka's EvictableKey does: privileged above not, then
// larger above smaller.
func worth(privileged bool, size int) int64 {
	w := int64(size)
	if privileged {
		w += 1 << 40
	}
	return w
}

func lessValuable(a, b *Session) bool {
	wa, wb := worth(a.privileged, a.cachedSize), worth(b.privileged, b.cachedSize)
	if wa != wb {
		return wa < wb
	}
	return a.id < b.id
}

func (c *Cache) evictLocked(s *Session) {
	c.removeLocked(s.id)
	c.evictions++
}

// remove drops session id, if cached.
func (c *Cache) remove(id int32) {
	c.mu.Lock()
	c.removeLocked(id)
	c.mu.Unlock()
}

func (c *Cache) removeLocked(id int32) {
	s := c.sessions[id]
	if s == nil {
		return
	}
	delete(c.sessions, id)
	if s.cachedSize > 0 {
		c.partsHeld -= s.cachedSize
	}
}

// touch records a use of s at now.
func (c *Cache) touch(s *Session, now time.Time) {
	s.mu.Lock()
	size := len(s.parts)
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[s.id] != s {
		return // closed or evicted meanwhile
	}
	c.setUseLocked(s, size, now)
}

// touchLocked is touch for a session whose parts nobody else sees yet. c.mu held.
func (c *Cache) touchLocked(s *Session, now time.Time) {
	c.setUseLocked(s, len(s.parts), now)
}

func (c *Cache) setUseLocked(s *Session, size int, now time.Time) {
	s.lastUsed = now
	if s.cachedSize > 0 {
		c.partsHeld -= s.cachedSize
	}
	s.cachedSize = size
	c.partsHeld += size
}
