package console

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// command is one entry of the console's command table. The table is the
// only list of commands: parsing, Describe, SHOW HELP and the error hints
// are all read from it.
type command struct {
	// name is what a client types, upper case: a word ("RELOAD"), or a word
	// and an item ("SHOW CLIENTS").
	name string
	// args says what may follow the name.
	args argSpec
	// syntax shows the arguments in SHOW HELP ("<sql>"); "" for none.
	syntax string
	// example is a complete invocation; it is the hint when required
	// arguments are missing. Empty: the name alone.
	example string
	// columns are the result's columns, all of type text; nil for a
	// command that returns no rows (Describe answers NoData).
	columns []string
	// help is SHOW HELP's description.
	help string
	// run executes the command with its argument text (see args). Its rows
	// have len(columns) values each.
	run func(c *call, arg string) (*result, *Error)
}

// argSpec says what may follow a command's name.
type argSpec int

const (
	// noArgs: nothing; anything else is 42601.
	noArgs argSpec = iota
	// noDatabaseArg: nothing. PgBouncer's command of the same name takes a
	// database; txlane's applies to every database, so an argument is
	// 0A000 (feature not supported) rather than a syntax error.
	noDatabaseArg
	// sqlArg: a SQL statement, required (42601 without, or with nothing but
	// blanks, semicolons and comments). It extends to the end of the
	// Query's text, semicolons and comments included.
	sqlArg
	// ignoredArgs: anything, ignored.
	ignoredArgs
)

// tag is the command's CommandComplete tag: its first word.
func (c *command) tag() string {
	verb, _, _ := strings.Cut(c.name, " ")
	return verb
}

// usage is the command as SHOW HELP lists it.
func (c *command) usage() string {
	if c.syntax == "" {
		return c.name
	}
	return c.name + " " + c.syntax
}

// call is what a command's handler runs with.
type call struct {
	p   Proxy
	log *zap.Logger
}

// result is a command's answer: rows for its columns, and warnings sent
// before them.
type result struct {
	rows    [][]string
	notices []string
}

// rows turns a function of the proxy's state into a handler that takes no
// arguments: the shape of every SHOW command.
func rows(f func(Proxy) [][]string) func(*call, string) (*result, *Error) {
	return func(c *call, _ string) (*result, *Error) { return &result{rows: f(c.p)}, nil }
}

var (
	// commands is the command table, in SHOW HELP's order. It is set by
	// init because SHOW HELP's handler reads it.
	commands []*command
	// byName indexes commands by name.
	byName map[string]*command
	// items lists, for a word that starts two-word names (SHOW), the
	// second words in table order.
	items map[string][]string
)

func init() {
	commands = []*command{
		{name: "SHOW CLIENTS", run: rows(showClients),
			columns: []string{"type", "user", "database", "state", "addr", "port", "connect_time", "wait", "wait_us", "link", "application_name", "id",
				"tx_status", "waiting_for", "units_of_work", "pinned"},
			help: "logged-in clients, PgBouncer's columns: state (active: holds a backend or has a request under way; idle; waiting: for a server), address and port, connect time, the current wait, link (the pid of the backend serving it), application_name, id; then txlane's: transaction status (I/T/E), what a waiting client waits for (server, resume), units of work held, what pins it to its backend (pool_mode transaction)"},
		{name: "SHOW POOLS", run: rows(showPools),
			columns: []string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_tested", "maxwait", "maxwait_us", "pool_mode", "lane", "pool_size"},
			help:    "every pool (PgBouncer's columns): the primary backends per database and user, and each database's vector-lane read pool (user: its login): clients not waiting and waiting for a server, backends serving, idle, running server_reset_query, the oldest wait, pool_mode; then txlane's: lane (primary, vector; console for the admin console's own clients), the pool's size"},
		{name: "SHOW SERVERS", run: rows(showServers),
			columns: []string{"type", "user", "database", "state", "addr", "port", "connect_time", "request_time", "link", "remote_pid", "lane"},
			help:    "backends (PgBouncer's columns): user, database, state (active, idle, tested), server address and port, login and last request times, link (the id of the client served), backend pid; then txlane's: lane (primary: clients' backends; vector: the read pools' connections, user their login)"},
		{name: "SHOW STATS", run: rows(showStats),
			columns: []string{"lane", "reason", "requests"},
			help:    "requests routed, by lane and reason"},
		{name: "SHOW POLICY", run: rows(showPolicy),
			columns: []string{"key", "value", "source"},
			help:    "the configuration and routing rules in force, vector tables (configured and discovered)"},
		{name: "SHOW UNITS", run: showUnits,
			columns: []string{"unit", "client_id", "addr", "user", "database", "application_name", "since", "failed", "local", "instance", "remote_pid", "unit_key"},
			help:    "units of work held and who holds them: clients of this instance (local) and, with policy.shared_units, of every instance (from pg_locks)"},
		{name: "SHOW VERSION", run: rows(showVersion),
			columns: []string{"version"},
			help:    "txlane's version, as `txlane version` prints it"},
		{name: "SHOW HELP", run: rows(showHelp),
			columns: []string{"command", "description"},
			help:    "this list"},
		{name: "RELOAD", run: reload,
			help: "read the configuration file again and apply it"},
		{name: "PAUSE", args: noDatabaseArg, run: pause,
			help: "hold new requests at a transaction boundary; waits for requests in flight and open transactions"},
		{name: "RESUME", args: noDatabaseArg, run: resume,
			help: "release the requests PAUSE holds"},
		{name: "EXPLAIN", args: sqlArg, syntax: "<sql>", run: explain,
			example: "EXPLAIN SELECT * FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5",
			columns: []string{"key", "value"},
			help:    "how txlane classifies and routes <sql> under the configured rules, outside a transaction"},
		{name: "SET", args: ignoredArgs, syntax: "<name> = <value>", run: set,
			example: "SET application_name = 'psql'",
			help:    "accepted and ignored (drivers set parameters when they connect)"},
	}
	byName = make(map[string]*command, len(commands))
	items = map[string][]string{}
	for _, c := range commands {
		if byName[c.name] != nil {
			panic("console: command " + c.name + " is listed twice")
		}
		byName[c.name] = c
		if verb, item, ok := strings.Cut(c.name, " "); ok {
			items[verb] = append(items[verb], item)
		}
	}
}

// Info describes one console command, as the command table holds it.
type Info struct {
	Name    string   // "SHOW CLIENTS", "RELOAD", ...
	Usage   string   // the name and its arguments, as SHOW HELP lists it
	Example string   // a complete invocation
	Columns []string // the result's columns; nil when it returns no rows
	Help    string   // SHOW HELP's description
}

// Commands lists the console's commands in SHOW HELP's order.
func Commands() []Info {
	out := make([]Info, len(commands))
	for i, c := range commands {
		ex := c.example
		if ex == "" {
			ex = c.name
		}
		out[i] = Info{Name: c.name, Usage: c.usage(), Example: ex, Columns: c.columns, Help: c.help}
	}
	return out
}

// takesSQL reports whether the command named word takes a SQL statement:
// its text is then not split at ';' nor stripped of comments.
func takesSQL(word string) bool {
	c := byName[strings.ToUpper(word)]
	return c != nil && c.args == sqlArg
}

// itemHint lists the items of verb for an error's hint: "SHOW CLIENTS,
// POOLS, STATS or HELP."
func itemHint(verb string) string {
	its := items[verb]
	if len(its) == 1 {
		return verb + " " + its[0] + "."
	}
	return verb + " " + strings.Join(its[:len(its)-1], ", ") + " or " + its[len(its)-1] + "."
}

// parse resolves one command's text against the table and returns the
// command and its argument text.
//
// Errors: an unknown command or item is 0A000; a missing item, missing
// required arguments or unexpected ones are 42601 (0A000 for PgBouncer's
// per-database forms, see noDatabaseArg).
func parse(text string) (*command, string, *Error) {
	text = skipBlank(text)
	if w, _ := firstWord(text); !takesSQL(w) {
		text = strings.TrimSpace(stripComments(text))
	}
	word, rest := firstWord(text)
	name := strings.ToUpper(word)
	if _, ok := items[name]; ok {
		verb := name
		item, more := firstWord(rest)
		if item == "" {
			e := errorf(CodeSyntaxError, "%s needs an item", verb)
			e.Hint = itemHint(verb)
			return nil, "", e
		}
		name, rest = verb+" "+strings.ToUpper(item), more
		if byName[name] == nil {
			e := errorf(CodeFeatureNotSupported, "unknown %s item %q on the txlane admin console", verb, strings.ToUpper(item))
			e.Hint = itemHint(verb)
			return nil, "", e
		}
	}
	cmd := byName[name]
	if cmd == nil {
		e := errorf(CodeFeatureNotSupported, "unsupported command %q on the txlane admin console", word)
		e.Detail = fmt.Sprintf("The database %q is txlane's admin console, not PostgreSQL.", Database)
		e.Hint = "SHOW HELP lists the commands."
		return nil, "", e
	}
	switch cmd.args {
	case noArgs:
		if a := trimArgs(rest); a != "" {
			return nil, "", errorf(CodeSyntaxError, "%s takes no arguments, got %q", cmd.name, a)
		}
		return cmd, "", nil
	case noDatabaseArg:
		if trimArgs(rest) != "" {
			return nil, "", errorf(CodeFeatureNotSupported, "%s applies to every database; it takes no arguments", cmd.name)
		}
		return cmd, "", nil
	case sqlArg:
		sql := strings.TrimSpace(rest)
		if emptyCommand(sql) {
			e := errorf(CodeSyntaxError, "%s needs a statement", cmd.name)
			e.Hint = cmd.example
			return nil, "", e
		}
		return cmd, sql, nil
	}
	return cmd, trimArgs(rest), nil
}
