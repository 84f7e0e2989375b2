// Package console is txlane's admin console: a small PostgreSQL server
// that answers the commands of one command table (SHOW CLIENTS, PAUSE,
// EXPLAIN, ...) over the simple and the extended protocol, from an
// inspection and control API of the proxy (Proxy).
//
// The package does not authenticate: the proxy decides who may use the
// console (with admin.users, PostgreSQL itself checks the user's password)
// and calls Serve for a client it has let in.
//
// Adding a SHOW command is one entry in the table (commands.go) and its
// handler; SHOW HELP, Describe and the error hints are read from the table.
//
// Files: api.go (the Proxy interface and the types it returns),
// commands.go (the command table), show.go (a handler per SHOW),
// control.go (RELOAD, PAUSE, RESUME, EXPLAIN, SET), console.go (Serve: the
// protocol), text.go (splitting command text), errors.go (SQLSTATEs).
//
// Goroutines: Serve runs on its caller's goroutine, one per console
// connection; it holds no locks (the Proxy implementation guards its own).
package console
