package proxy

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/catalog"
	"github.com/txlane/txlane/router"
)

// routing is what a session of one database decides with: an immutable
// snapshot, replaced whole when the policy or the catalog changes.
type routing struct {
	classifier *router.Classifier
	rules      *policy.Rules
}

// dbRouting keeps one database's routing snapshot fresh: vector tables found
// in the catalog and what classification reads there (function volatility,
// views, policies, triggers, ...: catalog.Read) are read over the vector
// lane when the database is first used, every discover interval after that,
// after committed DDL and on reload.
type dbRouting struct {
	cur       atomic.Pointer[routing]
	refreshMu sync.Mutex   // one refresh at a time
	loaded    atomic.Int64 // unix nanos of the last successful catalog read

	// mu serialises installs of cur, so that a reload and a catalog refresh
	// cannot leave the snapshot of an old policy or an old catalog behind.
	// Lock order: routeMu, then mu.
	mu struct {
		sync.Mutex
		// discovered and funcs are what the last catalog read found (nil
		// before the first).
		discovered []policy.Table
		funcs      router.FuncCatalog
	}
}

// dbRoutingFor returns database's routing state, making it at first use.
// It stays the database's for the server's life (sessions may keep it).
func (s *Server) dbRoutingFor(database string) *dbRouting {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	dr := s.dbRoutes[database]
	if dr == nil {
		dr = &dbRouting{}
		dr.cur.Store(s.baseRouting())
		s.dbRoutes[database] = dr
	}
	return dr
}

// currentRouting returns dr's snapshot (the routing state of database),
// loading it on first use and refreshing it in the background when it is
// older than the discover interval.
func (s *Server) currentRouting(database string, dr *dbRouting) *routing {
	live := s.live()
	if s.lanes == nil || !live.Discover {
		return dr.cur.Load()
	}
	last := dr.loaded.Load()
	if last == 0 {
		// First use, or after DDL: wait for the catalog. Sessions that
		// arrive meanwhile wait for the same read rather than start theirs.
		dr.refreshMu.Lock()
		again := dr.loaded.Load() == 0
		dr.refreshMu.Unlock()
		if again {
			s.refreshRouting(database, dr)
		}
	} else if time.Since(time.Unix(0, last)) > live.DiscoverInterval && dr.refreshMu.TryLock() {
		dr.refreshMu.Unlock()
		// NOTE: counted in s.wg, so that Close waits for it (and nothing
		// of it runs, or logs, after Close returns).
		s.mu.Lock()
		closed := s.mu.closed
		if !closed {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if !closed {
			go func() {
				defer s.wg.Done()
				s.refreshRouting(database, dr)
			}()
		}
	}
	return dr.cur.Load()
}

// allRouting returns a copy of the databases' routings, so that callers can
// work on each (taking dbRouting.mu) without holding routeMu.
func (s *Server) allRouting() map[string]*dbRouting {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	return maps.Clone(s.dbRoutes)
}

// baseRouting is the routing of the configured policy alone: before the
// catalog has been read, or without discovery.
func (s *Server) baseRouting() *routing {
	rules := s.policy.Load().rules
	return &routing{classifier: router.NewClassifier(router.ConfigFromRules(rules, s.noCatalog())), rules: rules}
}

// configuredRouting classifies with the configured policy and no catalog at
// all: what the admin console's EXPLAIN shows.
func (s *Server) configuredRouting() *routing {
	rules := s.policy.Load().rules
	return &routing{classifier: router.NewClassifier(router.ConfigFromRules(rules, nil)), rules: rules}
}

// explainRouting is what the admin console's EXPLAIN decides with: the
// routing of the primary DSN's database once its catalog has been read (the
// tables discovered there and what views and functions hide), else the
// configured policy alone.
func (s *Server) explainRouting() *routing {
	s.routeMu.Lock()
	dr := s.dbRoutes[s.opts.Primary.Database]
	s.routeMu.Unlock()
	if dr != nil {
		dr.mu.Lock()
		read := dr.mu.funcs != nil
		dr.mu.Unlock()
		if read {
			return dr.cur.Load()
		}
	}
	return s.configuredRouting()
}

// noCatalog is what classification uses when no catalog read succeeded yet:
// with discovery on, a catalog that knows nothing (every statement goes to
// the primary until a read succeeds: what views, triggers and the like do
// is unknown); without discovery, none (only the function lists apply, as
// configured).
func (s *Server) noCatalog() router.FuncCatalog {
	if s.lanes != nil && s.live().Discover {
		return router.UnreadCatalog()
	}
	return nil
}

// installRouting builds dr's snapshot from the current policy and, when
// discovered is not nil, a new catalog read (else the last one), and stores
// it. The snapshot has a new classifier, hence an empty classification cache.
// Sessions take it at their next request.
func (s *Server) installRouting(database string, dr *dbRouting, discovered []policy.Table, funcs router.FuncCatalog) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if discovered != nil {
		dr.mu.discovered, dr.mu.funcs = discovered, funcs
	}
	ps := s.policy.Load()
	rules := ps.rules
	if dr.mu.discovered != nil {
		cfg := ps.cfg
		cfg.Discovered = dr.mu.discovered
		r, err := policy.NewRules(cfg)
		if err != nil {
			s.log.Warn("catalog discovery: rules", zap.String("database", database), zap.Error(err))
		} else {
			rules = r
		}
	}
	cat := dr.mu.funcs
	if cat == nil {
		cat = s.noCatalog()
	}
	dr.cur.Store(&routing{classifier: router.NewClassifier(router.ConfigFromRules(rules, cat)), rules: rules})
}

// forgetCatalog drops what catalog reads found (discovery was turned off).
func (dr *dbRouting) forgetCatalog() {
	dr.mu.Lock()
	dr.mu.discovered, dr.mu.funcs = nil, nil
	dr.mu.Unlock()
	dr.loaded.Store(0)
}

// discoveredTables returns what the last catalog read of dr found.
func (dr *dbRouting) discoveredTables() []policy.Table {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.mu.discovered
}

// refreshRouting reads database's catalog over the vector lane and installs
// a new routing snapshot. On failure the previous snapshot stays and the next
// use tries again.
func (s *Server) refreshRouting(database string, dr *dbRouting) {
	dr.refreshMu.Lock()
	defer dr.refreshMu.Unlock()
	// NOTE: a failed read counts as a read for scheduling: the next try is
	// a discover interval away, in the background, so that a vector lane
	// that is down does not delay every request while it stays down.
	defer func() {
		if dr.loaded.Load() == 0 {
			dr.loaded.Store(time.Now().UnixNano())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.lanes.acquire(ctx, database)
	if err != nil {
		s.log.Warn("catalog discovery: no vector-lane connection", zap.String("database", database), zap.Error(err))
		return
	}
	c := res.Value()
	start := time.Now()
	// NOTE: the lane connection carries the last client's role and
	// search_path. The catalog queries qualify every name, and are read as
	// the pool's login with only pg_catalog on the path besides
	// (catalogReadBegin), in a transaction that takes both back at its end.
	snap, err := catalog.Read(func(sql string) ([][]string, error) {
		return c.queryRows(catalogReadBegin + sql + "; COMMIT")
	})
	s.lanes.release(res, err != nil)
	if err != nil {
		s.log.Warn("catalog discovery failed", zap.String("database", database), zap.Error(err))
		return
	}
	s.installRouting(database, dr, snap.VectorTables, router.NewCatalog(snap.Objects))
	dr.loaded.Store(time.Now().UnixNano())
	s.log.Debug("catalog discovered", zap.String("database", database), zap.Int("vector_tables", len(snap.VectorTables)),
		zap.Int("functions", len(snap.Objects.Functions)), zap.Int("relations", len(snap.Objects.Relations)),
		zap.Duration("took", time.Since(start)))
}

// catalogReadBegin starts the transaction catalog discovery reads in.
const catalogReadBegin = "BEGIN READ ONLY; SET LOCAL ROLE NONE; SET LOCAL search_path = pg_catalog, pg_temp; "

// queryRows runs sql on the lane connection and returns its rows as text
// (NULL as "").
func (c *laneConn) queryRows(sql string) ([][]string, error) {
	var rows [][]string
	err := c.query(sql, func(values [][]byte) {
		row := make([]string, len(values))
		for i, v := range values {
			row[i] = string(v)
		}
		rows = append(rows, row)
	})
	return rows, err
}

// schemaChanged marks database's catalog read as out of date after committed
// DDL: the next request of the database reads it again before routing,
// so a vector table created a moment ago is routed as one.
func (s *Server) schemaChanged(database string) {
	if s.lanes == nil {
		return
	}
	s.routeMu.Lock()
	dr := s.dbRoutes[database]
	s.routeMu.Unlock()
	if dr != nil && dr.loaded.Load() != 0 {
		dr.loaded.Store(0)
	}
}
