// Command txlane is a PostgreSQL wire-protocol proxy: it sends reads of vector
// tables over a dedicated read pool and rejects or reroutes writes that would
// escape an open transaction.
//
// Usage:
//
//	txlane [run] [--config FILE]    run the proxy (the default command)
//	txlane check [--config FILE]    validate the configuration file
//	txlane explain [flags] SQL      show how a statement would be routed
//	txlane version                  print version information
//
// --config defaults to $TXLANE_CONFIG, or txlane.yaml when that is unset.
//
// Files:
//
//	main.go      commands and flags
//	run.go       run: load the file, start the proxy and the admin endpoint,
//	             stop on a signal
//	serve.go     the proxy's Options and policy from a Config
//	unix.go      the Unix-domain socket listener (unix_socket_dir)
//	reuseport.go the TCP listener, with SO_REUSEPORT (listen_reuseport)
//	reload.go    file watch, SIGHUP, RELOAD: parse, validate, swap
//	http.go      the admin endpoint: /metrics, /healthz, /readyz
//	check.go     txlane check
//	explain.go   txlane explain
//
// Goroutines: main; the proxy's (see package proxy); the file watcher and
// signal handler (reload.go); the HTTP server (http.go); the proxy's Serve
// and, at a stop, its Shutdown (run.go).
//
// Locks: reloader.mu (reload.go), the only lock here, serialises reloads.
// Lock order: reloader.mu → the proxy's locks (a reload holds it across
// proxy.Server.Reload).
package main
