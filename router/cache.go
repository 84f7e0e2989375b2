package router

import (
	"strings"
	"sync"

	"github.com/txlane/txlane/policy"
)

// numShards spreads lock traffic; a power of two.
const numShards = 16

// maxCachedText is the longest query text worth caching.
const maxCachedText = 16 << 10

// entryOverhead approximates the memory of a cached Statement beyond its key.
const entryOverhead = 512

// cache maps a key (an exact query text, or a key it shares with other
// texts: see sharedKeys) to its classification. It is a sharded
// two-generation map: lookups hit "cur" then "old"; when "cur" reaches its
// budget it becomes "old" and the previous "old" is dropped. Texts in use
// keep being promoted into "cur", so the hot set survives while memory stays
// bounded by two generations (about CacheEntries entries and CacheBytes
// bytes in total). No per-entry bookkeeping: a hit under a read lock does
// not allocate.
type cache struct {
	maxEntries int // per shard per generation
	maxBytes   int // per shard per generation
	shards     [numShards]shard
}

type shard struct {
	// mu guards every field below.
	mu       sync.RWMutex
	cur, old map[string]*policy.Statement
	curBytes int
}

func newCache(entries, bytes int) *cache {
	c := &cache{
		maxEntries: max(1, entries/(2*numShards)),
		maxBytes:   max(1, bytes/(2*numShards)),
	}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]*policy.Statement)
	}
	return c
}

// shardOf hashes a bounded prefix and suffix of the text: cheap for the
// long texts an inline vector literal makes, and spread enough for 16 shards.
func (c *cache) shardOf(sql string) *shard {
	h := uint32(2166136261) ^ uint32(len(sql))
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
	}
	if len(sql) <= 64 {
		mix(sql)
	} else {
		mix(sql[:32])
		mix(sql[len(sql)-32:])
	}
	return &c.shards[h&(numShards-1)]
}

func (c *cache) get(sql string) (*policy.Statement, bool) {
	sh := c.shardOf(sql)
	sh.mu.RLock()
	st, ok := sh.cur[sql]
	if ok {
		sh.mu.RUnlock()
		return st, true
	}
	st, ok = sh.old[sql]
	sh.mu.RUnlock()
	if ok {
		// Still in use: promote so the next rotation keeps it.
		sh.mu.Lock()
		c.insertLocked(sh, sql, st)
		sh.mu.Unlock()
	}
	return st, ok
}

func (c *cache) put(sql string, st *policy.Statement) {
	if len(sql) > maxCachedText || len(sql)+entryOverhead > c.maxBytes/8 {
		// Huge texts (typically an inline vector literal: unique per query)
		// would churn the hot set out of the cache for no hits.
		return
	}
	sh := c.shardOf(sql)
	sh.mu.Lock()
	c.insertLocked(sh, sql, st)
	sh.mu.Unlock()
}

func (c *cache) insertLocked(sh *shard, sql string, st *policy.Statement) {
	if _, ok := sh.cur[sql]; ok {
		return
	}
	size := len(sql) + entryOverhead
	if len(sh.cur) >= c.maxEntries || sh.curBytes+size > c.maxBytes {
		sh.old, sh.cur, sh.curBytes = sh.cur, make(map[string]*policy.Statement, len(sh.cur)), 0
	}
	// NOTE: the key may alias a caller's wire buffer (ClassifyBytes): copy.
	sh.cur[strings.Clone(sql)] = st
	sh.curBytes += size
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.cur)
		for k := range sh.old {
			if _, dup := sh.cur[k]; !dup {
				n++
			}
		}
		sh.mu.RUnlock()
	}
	return n
}
