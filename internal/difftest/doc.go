// Package difftest runs the same SQL scenario directly against PostgreSQL and through txlane,
// and fails when the two transcripts differ (differential testing).
//
// A scenario is a text file of steps executed on one or more named client connections. The
// runner executes it against one DSN and writes a Transcript: for every step its command tags,
// column names and types, rows as text, notices, errors as `SQLSTATE: message` (with detail,
// hint, position and context), the transaction status after the step and changed
// ParameterStatus values. Facts that legitimately differ between two connections (backend
// process IDs, ports, temporary schema numbers, OIDs of objects the scenario creates) never
// appear. [Run] executes a scenario on both DSNs and reports a unified diff; [RunDir] does so
// for every scenario of a directory, as parallel subtests. The same scenarios serve any
// txlane configuration (session mode, vector lane routing on): only the proxied DSN changes.
//
// # Transcript
//
// Each step starts with "== N (line L) [conn] kind ...", then the SQL ("> ..."), then what
// came back:
//
//	columns: id integer, v vector(3), b bytea (binary)   names and types (format_type)
//	row: 1 | [1,2,3] | \x00ff                           text values; NULL; "quoted" when ambiguous
//	tag: INSERT 0 1                                      the command tag ("(empty query)")
//	ERROR 23505: duplicate key value ...                 errors and notices: severity, SQLSTATE,
//	  detail: ... / hint: ... / where: ...               message, then the other fields
//	parameter TimeZone = UTC                             a ParameterStatus that changed
//	status T                                             ReadyForQuery status after the step
//
// Pipeline items and raw messages are prefixed with their index ("  [3] ..."). Results longer
// than 200 rows and values longer than 512 bytes are summarized by count or length and a
// SHA-256 prefix.
//
// # Scenario format
//
// A scenario is read line by line. Outside a statement, a line starting with "--" is either a
// directive (the word after "--" is one of those below) or a comment. To catch typos, a line
// "-- word: ..." whose lowercase word is not a directive is an error; write comments as prose
// ("-- Prepared statements survive ...").
//
// Any other non-blank line starts an SQL statement. The statement ends with the first line
// that ends in ";" outside quotes and comments, or at a blank line, so
//
//	INSERT INTO t VALUES (1); SELECT 1/0; SELECT 2;
//
// is one step: one simple Query message with three statements. Quoted strings, quoted
// identifiers, dollar-quoted bodies and /* */ comments may span lines and contain ";" and
// blank lines:
//
//	DO $$
//	BEGIN
//	  RAISE NOTICE 'hello';
//	END
//	$$;
//
// A statement is sent with the simple protocol (pgconn Exec) unless the mode is extended or
// the statement follows a "-- params:" directive; then it is sent with the extended protocol
// (Parse/Bind/Describe/Execute/Sync, pgconn ExecParams) and its parameters in text format. A
// statement of the form "COPY ... FROM STDIN" is followed by its data lines up to a line "\."
// (sent as CopyData, pgconn CopyFrom); "COPY ... TO STDOUT" records the data it receives
// (pgconn CopyTo).
//
// Directives:
//
//	-- conn NAME [key=value ...]   switch to connection NAME, opened on first use. Pairs set
//	                               user, password, database or any run-time parameter
//	                               (application_name=x, TimeZone=UTC). Steps before the first
//	                               "-- conn" use connection "main".
//	-- close                       close the current connection (a later step reopens it).
//	                               Once the server has closed a connection (a FATAL error),
//	                               its steps are recorded as not run until "-- close"
//	-- mode: simple|extended       protocol for the following statements (default simple)
//	-- params: 1, 'it''s', null    the next statement or exec is extended with these text
//	                               parameters: null is NULL, '...' is a string ('' escapes a
//	                               quote), anything else is taken verbatim (trimmed)
//	-- binary                      the next extended statement or exec asks for binary results
//	                               (values are recorded in hex)
//	-- sleep: 300ms                pause before the next step (to let a server-side timer fire)
//	-- timeout: 200ms              deadline of the next step (default 30s); when it passes,
//	                               the client sends a CancelRequest, as libpq-style clients do
//	-- prepare: NAME               the next statement is prepared as NAME (Parse + Describe);
//	                               the transcript shows parameter and column types
//	-- exec: NAME                  execute prepared statement NAME (Bind/Describe/Execute/Sync),
//	                               with the "-- params:" given before it
//	-- deallocate: NAME            close prepared statement NAME (a Close message)
//	-- empty                       send an empty query string
//	-- notifications: N            wait (up to 5s) until N notifications (LISTEN/NOTIFY) have
//	                               arrived on the current connection and record them; they
//	                               are recorded nowhere else, because their arrival time is
//	                               not deterministic
//	-- pipeline                    start a pipeline on the current connection (pgconn
//	                               StartPipeline). Until "-- end" statements are queued as
//	                               extended queries (with "-- params:"/"-- binary"), and
//	                               "-- prepare:", "-- exec:", "-- deallocate:" queue their
//	                               messages
//	-- sync                        queue a Sync inside a pipeline
//	-- flush                       inside a pipeline: send a Flush and everything queued, and
//	                               read the results so far before queuing more (a client that
//	                               waits for answers before its Sync)
//	-- end                         send the pipeline and read every result. The last item
//	                               must be "-- sync". Items after an error up to the next Sync
//	                               are recorded as skipped, as the server skips them
//	-- raw                         protocol messages, one per line up to "-- end", sent
//	                               through pgconn's Frontend; every response is recorded by
//	                               message type. Lines (NAME "-" is the unnamed statement or
//	                               portal; PARAMS as for "-- params:"):
//	                                 parse NAME SQL
//	                                 bind PORTAL STATEMENT [PARAMS]
//	                                 describe statement|portal NAME
//	                                 execute PORTAL [MAXROWS]
//	                                 close statement|portal NAME
//	                                 flush    send what is queued and read the responses so far
//	                                 sync     send it and read up to ReadyForQuery
//	                                 query SQL   a simple Query, read up to ReadyForQuery
//	                                 copydata LINE    CopyData with LINE and a newline
//	                                 copydone         send, read the COPY's answer
//	                                 copyfail MESSAGE send, read the COPY's answer
//	                                 fcall OID [PARAMS]  a FunctionCall (fast path) with text
//	                                          arguments, read up to ReadyForQuery
//	                               The block must end with sync, query, copydone, copyfail or
//	                               fcall.
//	                               Messages after an error up to the next Sync are recorded as
//	                               skipped, and a Sync sent during COPY FROM STDIN (which the
//	                               server ignores) as ignored.
//
// The token {{id}} anywhere in a statement, data line or directive is replaced by a token
// unique to each execution (lowercase letters and digits), and mapped back in the
// transcript. Scenarios that name their tables t_{{id}} can therefore run concurrently and
// repeatedly on one database. Every scenario must still clean up after itself: drop what it
// creates at the end, and use DROP ... IF EXISTS at the start.
//
// Files:
//
//	difftest.go   Run, RunDir: a scenario on both DSNs, the diff as a test failure
//	scenario.go   Parse, ParseFile: the scenario language into Steps
//	run.go        Execute: steps on pgconn connections, the transcript
//	diff.go       Diff: a unified diff of two transcripts
//
// Goroutines: RunDir's parallel subtests, one per scenario; Execute runs a scenario's steps
// one after another on its caller's goroutine. No locks.
package difftest
