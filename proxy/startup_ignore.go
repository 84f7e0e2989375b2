package proxy

import (
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// dropIgnored removes from a client's startup message the parameters of
// ignore_startup_parameters (names in any letter case: GUC names are
// case-insensitive), before anything reads it. As with PgBouncer, the
// client's value is then ignored, not kept: the server never sees it (the
// relayed login and the pool's own logins leave it out, so the session has
// the server's default or the primary DSN's runtime parameter), and pools,
// whose key holds the startup parameters that cannot move, do not split on
// it. user and database are never dropped (config refuses them).
func dropIgnored(m *pgproto3.StartupMessage, ignore []string) {
	if len(ignore) == 0 {
		return
	}
	for k := range m.Parameters {
		if k == "user" || k == "database" {
			continue
		}
		for _, name := range ignore {
			if strings.EqualFold(k, name) {
				delete(m.Parameters, k)
				break
			}
		}
	}
}
