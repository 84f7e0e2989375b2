package proxy

import "github.com/txlane/txlane/policy"

// A holder's transaction-local state (escape: reroute). What a transaction
// sets for itself alone lasts until it ends and applies to everything run
// in it, a rerouted write included: SET LOCAL, set_config(name, value,
// true) (PostgreSQL "System Administration Functions": "If is_local is
// true, the new value will only apply during the current transaction", as
// SET LOCAL), SET TRANSACTION and the transaction_* settings. A write
// rerouted into a transaction that set its search_path locally resolves
// its table names there, and lands in another schema. txlane does not
// follow such values (they end with the transaction, a ROLLBACK TO may
// undo them), so a transaction that may have set any of them takes no
// rerouted write: localAt marks it, as savepointAt marks a savepoint.
//
// A function's SET clause is not counted: PostgreSQL restores the setting
// when the function exits ("CREATE FUNCTION", SET clause), a SET LOCAL (or
// set_config(…, true)) of it inside the function included. A plain SET
// inside it persists past the exit, and a set_config(…, true) of another
// setting lasts for the transaction: a function that may set settings makes
// the session's state its own (noteOwnState), which bars reroute as well.

// noteLocalState records that part p (one statement), sent to the primary,
// may change the transaction-local state of the client's transaction.
// txlane.unit alone does not count: setting it is what makes a holder.
func (s *session) noteLocalState(p *policy.Statement) {
	if setsLocalState(p) {
		s.localAt.Store(s.txEnds.Load() + 1)
	}
}

// setsLocalState reports whether p may change transaction-local state (see
// noteLocalState).
func setsLocalState(p *policy.Statement) bool {
	if p.Tx.Kind == policy.TxSetTransaction {
		return true
	}
	for _, set := range p.Settings {
		switch {
		case set.Name == unitSetting:
		case set.Local:
			return true
		}
		switch set.Name {
		case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
			// A session-level SET of these is SET TRANSACTION.
			return true
		}
	}
	for _, c := range p.ConfigCalls {
		if c.Local && c.Name != unitSetting {
			return true
		}
		switch c.Name {
		case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
			return true
		}
	}
	return false
}

// holderBar returns why nothing more may run inside h's transaction, as
// far as its client has changed that transaction since it took the unit
// ("" when it may). Asked when the write is planned (rerouteBar) and again
// when the holder's backend is idle and the write is about to be sent
// (reroute), since the holder may have sent more in between.
func holderBar(h *unitHold) string {
	hs := h.sess
	switch {
	case hs.txEnds.Load() != h.txEnds:
		return "The holder's client has ended the transaction that took the unit (a request that ends one and begins another keeps the hold until it ends)."
	case hs.savepointAt.Load() == h.txEnds+1:
		// NOTE: a ROLLBACK TO it would undo the write after its client was
		// told it ran, in a transaction that then commits.
		return "The holder's transaction has made a savepoint, and rolling back to it would undo the write without a word to its client."
	case hs.localAt.Load() == h.txEnds+1:
		return "The holder's transaction has set transaction-local settings (SET LOCAL, set_config(…, true), SET TRANSACTION), which the write would run under."
	}
	return ""
}
