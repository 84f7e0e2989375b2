package config

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/txlane/txlane/policy"
)

// RulesConfig is the routing policy c describes: the one mapping from the
// file's keys to policy.RulesConfig. The server (proxy.Options.Rules, at
// start and on reload) and `txlane explain` both use it, so that explain
// decides under exactly the server's rules. Discovered is left empty: the
// server fills it per database from the catalog, explain with --discover.
// The slices are copies.
func (c *Config) RulesConfig() policy.RulesConfig {
	p := c.Policy
	overrides := make([]policy.EscapeOverride, len(p.EscapeOverrides))
	for i, o := range p.EscapeOverrides {
		overrides[i] = policy.EscapeOverride{Table: o.Table, Escape: string(o.Escape)}
	}
	return policy.RulesConfig{
		VectorTables:      slices.Clone(p.VectorTables),
		AfterWrite:        string(p.AfterWrite),
		OnUnavailable:     string(c.ReadPool.OnUnavailable),
		WritingFunctions:  slices.Clone(p.WritingFunctions),
		ReadOnlyFunctions: slices.Clone(p.ReadOnlyFunctions),
		Escape:            string(p.Escape),
		EscapeOverrides:   overrides,
		UnitCommentKeys:   slices.Clone(p.UnitCommentKeys),
	}
}

// Rules validates RulesConfig into the policy's rules (without discovered
// tables). For a Config returned by Load or Parse it does not fail:
// validation has built the same rules.
func (c *Config) Rules() (*policy.Rules, error) {
	return policy.NewRules(c.RulesConfig())
}

// kvPassword matches a password in a key=value connection string.
var kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// maskDSN hides the password of a libpq URL or key=value connection string,
// for SHOW POLICY.
func maskDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparsable URL)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
