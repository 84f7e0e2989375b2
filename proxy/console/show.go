package console

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"
)

// The SHOW handlers: each turns the proxy's state into the rows of the
// columns its table entry declares, in the same order.

// Timestamp formats a time as the console shows it, and as txlane's
// errors name one (the 25L01 detail's "open since"): UTC, to the
// millisecond, "2006-01-02 15:04:05.000Z". One format, so that a time in an
// error can be found in SHOW UNITS as written.
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") }

// seconds and micros split d as PgBouncer's wait, wait_us, maxwait and
// maxwait_us columns do: whole seconds, and the microseconds beyond them.
func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
func micros(d time.Duration) string {
	return strconv.Itoa(int(d % time.Second / time.Microsecond))
}

// hostPort splits a socket address into SHOW CLIENTS' and SHOW SERVERS'
// addr and port; a Unix-domain socket has no port.
func hostPort(addr string) (host, port string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return host, port
}

func showClients(p Proxy) [][]string {
	var rows [][]string
	for _, c := range p.Clients() {
		host, port := hostPort(c.Addr)
		rows = append(rows, []string{"C", c.User, c.Database, c.State, host, port, Timestamp(c.Since),
			seconds(c.Wait), micros(c.Wait), pidText(c.ServerPID), c.ApplicationName, strconv.FormatUint(c.ID, 10),
			string(rune(c.TxStatus)), c.WaitingFor, strconv.Itoa(c.Units), c.Pinned})
	}
	return rows
}

func showPools(p Proxy) [][]string {
	var rows [][]string
	for _, pl := range p.Pools() {
		rows = append(rows, []string{pl.Database, pl.User, strconv.Itoa(pl.ClActive), strconv.Itoa(pl.ClWaiting),
			strconv.Itoa(pl.SvActive), strconv.Itoa(pl.SvIdle), strconv.Itoa(pl.SvTested),
			seconds(pl.MaxWait), micros(pl.MaxWait), pl.PoolMode, pl.Lane, strconv.Itoa(pl.PoolSize)})
	}
	return rows
}

func showServers(p Proxy) [][]string {
	var rows [][]string
	for _, s := range p.Servers() {
		host, port := hostPort(s.Addr)
		link, connect, request := "", "", ""
		if s.Link != 0 {
			link = strconv.FormatUint(s.Link, 10)
		}
		if !s.ConnectTime.IsZero() {
			connect = Timestamp(s.ConnectTime)
		}
		if !s.RequestTime.IsZero() {
			request = Timestamp(s.RequestTime)
		}
		rows = append(rows, []string{"S", s.User, s.Database, s.State, host, port, connect, request, link, pidText(s.PID), s.Lane})
	}
	return rows
}

func showVersion(p Proxy) [][]string { return [][]string{{p.Version()}} }

func showStats(p Proxy) [][]string {
	var rows [][]string
	for _, r := range p.Routes() {
		rows = append(rows, []string{r.Lane, r.Reason, strconv.FormatFloat(r.Requests, 'f', -1, 64)})
	}
	return rows
}

// showPolicy lists the configuration keys (source "config"), the rules in
// force, the vector tables configured and discovered per database, and
// whether PAUSE holds.
func showPolicy(p Proxy) [][]string {
	pi := p.Policy()
	var rows [][]string
	for _, st := range pi.Settings {
		rows = append(rows, []string{st.Name, st.Value, st.Source})
	}
	if r := pi.Rules; r != nil {
		rows = append(rows,
			[]string{"rules.after_write", r.AfterWrite().String(), "in force"},
			[]string{"rules.on_unavailable", r.OnUnavailable().String(), "in force"})
		for _, f := range r.WritingFunctions() {
			rows = append(rows, []string{"rules.writing_function", f.String(), "in force"})
		}
		for _, f := range r.ReadOnlyFunctions() {
			rows = append(rows, []string{"rules.read_only_function", f.String(), "in force"})
		}
		for _, t := range r.VectorTables() {
			name := t.String()
			if t.Schema == "" {
				name += " (any schema)"
			}
			rows = append(rows, []string{"vector_table", name, "config"})
		}
	}
	dbs := make([]string, 0, len(pi.Discovered))
	for db := range pi.Discovered {
		dbs = append(dbs, db)
	}
	slices.Sort(dbs)
	for _, db := range dbs {
		for _, t := range pi.Discovered[db] {
			rows = append(rows, []string{"vector_table", t.String(), "discovered in database " + db})
		}
	}
	return append(rows, []string{"paused", strconv.FormatBool(p.Paused()), "admin console"})
}

// unitsTimeout bounds SHOW UNITS' reading of the other instances' units.
const unitsTimeout = 5 * time.Second

func showUnits(c *call, _ string) (*result, *Error) {
	ctx, cancel := context.WithTimeout(context.Background(), unitsTimeout)
	defer cancel()
	units, err := c.p.Units(ctx)
	res := &result{}
	if err != nil {
		res.notices = append(res.notices, "the units of other txlane instances could not be read: "+err.Error())
	}
	for _, u := range units {
		client, since := "", ""
		if u.Local {
			client = strconv.FormatUint(u.ClientID, 10)
		}
		if !u.Since.IsZero() {
			since = Timestamp(u.Since)
		}
		res.rows = append(res.rows, []string{u.Unit, client, u.Addr, u.User, u.Database,
			u.ApplicationName, since, strconv.FormatBool(u.Failed), strconv.FormatBool(u.Local),
			strconv.Itoa(u.Instance), pidText(u.BackendPID), strconv.FormatUint(uint64(u.Key), 10)})
	}
	return res, nil
}

// showHelp lists the command table.
func showHelp(Proxy) [][]string {
	rows := make([][]string, len(commands))
	for i, c := range commands {
		rows[i] = []string{c.usage(), c.help}
	}
	return rows
}

// pidText is a backend process ID, or "" for none.
func pidText(pid uint32) string {
	if pid == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(pid), 10)
}
