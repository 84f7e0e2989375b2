package proxy

import "time"

// OpsOptions are the operational settings of a Server, embedded in Options.
// Zero values mean the documented defaults. Reload replaces all of them
// except OnReload.
type OpsOptions struct {
	// QueryWaitTimeout bounds how long a request is held at dispatch
	// while txlane is paused (PAUSE on the admin console); past it the request
	// fails with SQLSTATE 57014 (default 120s).
	//
	// NOTE: the vector lane's acquire wait is bounded by
	// ReadPool.AcquireTimeout; the txlane command passes
	// min(read_pool.acquire_timeout, query_wait_timeout) there, so that no
	// wait for a backend exceeds query_wait_timeout.
	QueryWaitTimeout time.Duration
	// IdleInTransactionTimeout closes a client that stays idle inside a
	// transaction block longer than this with FATAL 25P03, as PostgreSQL's
	// idle_in_transaction_session_timeout does; its transaction rolls back.
	// Zero disables it.
	IdleInTransactionTimeout time.Duration
	// AdminUsers lists the user names the admin console accepts (database
	// "txlane"). Each logs in as to PostgreSQL: txlane relays the login to
	// the primary server (the primary DSN's database, or "postgres") and
	// serves the console once the server accepted it; a user not listed
	// gets FATAL 28000. Empty: only local connections from the OS user
	// running txlane (Linux), identified by the owner of the client's
	// socket, without a password.
	AdminUsers []string
	// Settings describe the configuration in force, as SHOW POLICY lists
	// it: the rows in order. Values must not hold secrets.
	Settings []Setting
	// OnReload, when set, is what the admin console's RELOAD runs: read the
	// configuration again and call Server.Reload. Its error is shown to the
	// admin client. Reload keeps the OnReload the Server started with.
	OnReload func() error
}

// Setting is one configuration key, its value and where the value came
// from ("default", "file" or "env"), for SHOW POLICY's key, value and source
// columns.
type Setting struct {
	Name, Value, Source string
}

func (o *OpsOptions) setDefaults() {
	if o.QueryWaitTimeout <= 0 {
		o.QueryWaitTimeout = 120 * time.Second
	}
	if o.IdleInTransactionTimeout < 0 {
		o.IdleInTransactionTimeout = 0
	}
}
