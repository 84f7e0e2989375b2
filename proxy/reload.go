package proxy

import (
	"fmt"

	"github.com/txlane/txlane/policy"
)

// Reload applies a new configuration while clients stay connected: parse →
// validate → swap. opts is validated first (the routing rules); when it is
// invalid Reload returns the error and changes nothing.
//
// What changes:
//   - the routing policy (Rules: vector tables, after_write, on_unavailable,
//     function lists) and catalog discovery (Discover, DiscoverInterval):
//     every database's routing snapshot is rebuilt with a new classifier, so
//     the classification cache starts empty, and each database's catalog is
//     read again in the background. A session takes the new snapshot at its
//     next safe point, the next request; decisions already carried out
//     in an open transaction stand, and the transaction state it tracked
//     (tables written, isolation) carries over to the new rules;
//   - the vector lane's sizes and timeouts (ReadPool except Config; see
//     lanePools.reconfigure);
//   - limits read when a client arrives (MaxClientConn, MaxMessageSize,
//     ClientLoginTimeout), which apply to new clients;
//   - OpsOptions except OnReload, and any other field the proxy reads
//     through s.live();
//   - the auth file (Auth.File): logins from then on check against it.
//
// What does not: Primary, TLS, ReadPool.Config, Logger, Metrics, Auth but
// its File. The caller
// reports changes to those as needing a restart.
func (s *Server) Reload(opts Options) error {
	rules, err := policy.NewRules(opts.Rules)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	cur := s.live()
	next := opts
	next.Primary, next.TLS, next.Logger, next.Metrics = cur.Primary, cur.TLS, cur.Logger, cur.Metrics
	next.ReadPool.Config = cur.ReadPool.Config
	next.OnReload = cur.OnReload
	file := next.Auth.File
	next.Auth = cur.Auth
	next.Auth.File = file
	next.setDefaults()

	// NOTE: the policy is stored before the snapshots are rebuilt: a
	// database first used meanwhile builds from the new policy, and one
	// already known is rebuilt below (see installRouting).
	s.ops.live.Store(&next)
	s.auth.file.Store(file)
	s.policy.Store(&policyState{cfg: next.Rules, rules: rules})
	for db, dr := range s.allRouting() {
		if !next.Discover {
			dr.forgetCatalog()
		}
		s.installRouting(db, dr, nil, nil)
		if s.lanes != nil && next.Discover {
			go s.refreshRouting(db, dr) // vector tables are refreshed on reload
		}
	}
	if s.lanes != nil {
		s.lanes.reconfigure(next.ReadPool)
	}
	// Requests held by PAUSE re-read query_wait_timeout.
	s.setGate(func(*gateState) {})
	return nil
}
