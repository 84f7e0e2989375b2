// Package policy decides which lane runs a request: the client's own primary
// connection, or the shared vector-lane pool.
//
// The package is pure: it performs no I/O and holds no globals. The router
// turns SQL into a [Statement]; the proxy keeps a [TxState] per client from
// the ReadyForQuery byte and the statements that ran; configuration arrives
// as an immutable [Rules] value. [Decide] combines the three and returns a
// [Decision] with a stable [Reason].
//
// Fail-safe defaults run through the package: the zero [Lane] is [Primary],
// the zero [Class] is [Unknown], and every doubt resolves to the primary lane,
// because a read wrongly kept on the primary costs throughput while a read
// wrongly offloaded can return data the transaction must not see.
package policy
