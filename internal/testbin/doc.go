// Package testbin helps tests that run programs of this module as separate
// processes (the txlane binary, the examples): building them, finding free
// ports, collecting their output.
//
// Files: testbin.go (Root, Build, Txlane, FreeAddr, SyncBuffer).
//
// No goroutines of its own. Locks: SyncBuffer.mu, the only one, guards a
// process's output between the goroutine os/exec copies it with and the
// test reading it.
package testbin
