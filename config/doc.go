// Package config holds txlane's configuration: one YAML file, edited by people.
//
// Load reads a file, expands ${VAR} and ${VAR:-default} references in scalar
// values, decodes it into a Config and validates it. Every problem is reported
// with its position as FILE:LINE:COL: message, and all of them are reported at
// once (see Errors), so that one run of `txlane check` shows everything to fix.
//
// A *Config returned by Load or Parse is a snapshot: callers treat it as
// immutable and never modify it, nor the slices it holds, since other
// goroutines may be reading it. A reload parses and validates a new file into a
// new snapshot and swaps it in; a bad file keeps the last good snapshot.
// Default returns a fresh Config that its caller owns.
//
// One table, Keys, describes every key: how it is decoded, its default,
// its checks, how SHOW POLICY prints it and whether a reload applies it (see
// Apply). Defaults are set there and nowhere else; Default builds a Config
// from them. The reference for the file format, with every key and its
// default, is examples/txlane.yaml, and README.md lists every key; tests
// keep both equal to the table.
//
// Config.RulesConfig is the one mapping from the file's keys to the routing
// policy (package policy), used by the server and by `txlane explain` alike.
// Names in the file (policy.vector_tables, the function lists) follow
// policy's grammar (policy.ParseTable, policy.ParseFunc), so that `txlane
// check` accepts exactly the names the running policy accepts.
//
// Files:
//
//	config.go    Config and its documented fields
//	keys.go      the one key table: decoding, defaults, checks, SHOW POLICY
//	             rows, live or restart on reload
//	load.go      YAML decoding, ${ENV} expansion, positions
//	rules.go     Config → policy.Rules, the one mapping the server and
//	             `txlane explain` share
//
// The package holds no state, starts no goroutines and takes no locks.
package config
