package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/catalog"
	"github.com/txlane/txlane/router"
)

func init() { explainCommand = explain }

// isolationFlag is --in-transaction[=LEVEL]: a flag that may stand alone
// (READ COMMITTED) or name the level.
type isolationFlag struct{ level string }

func (f *isolationFlag) String() string   { return f.level }
func (f *isolationFlag) IsBoolFlag() bool { return true }
func (f *isolationFlag) Set(v string) error {
	switch v {
	case "true", "read-committed", "read committed":
		f.level = "in_tx_read_committed"
	case "repeatable-read", "repeatable read":
		f.level = "in_tx_repeatable_read"
	case "serializable":
		f.level = "in_tx_serializable"
	case "false":
		f.level = ""
	default:
		return fmt.Errorf("want read-committed, repeatable-read or serializable, got %q", v)
	}
	return nil
}

// explain implements `txlane explain`: how txlane would classify and route
// one SQL text, so that people editing a policy can check it.
func explain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", `[--config FILE] [--in-transaction[=LEVEL]] [--state SPEC] [--search-path LIST] [--discover] [--json] "SQL"`, stderr)
	path := configFlag(fs)
	var inTx isolationFlag
	fs.Var(&inTx, "in-transaction", "decide as inside a transaction: `LEVEL` read-committed (alone), repeatable-read or serializable")
	state := fs.String("state", "", "transaction state, e.g. in_tx_wrote:public.items,temp:scratch (overrides --in-transaction)")
	searchPath := fs.String("search-path", `"$user", public`, "search_path used to resolve unqualified names")
	user := fs.String("user", "", "user name that $user in the search path stands for")
	discover := fs.Bool("discover", false, "also read vector tables and function volatility from the primary's catalog")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args, 1); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, `txlane explain: want exactly one SQL text argument, e.g. txlane explain "SELECT 1"`)
		return exitUsageErr
	}
	sql := fs.Arg(0)
	cfg, _, ok := loadConfig(*path, stderr)
	if !ok {
		return exitFailure
	}

	var discovered []policy.Table
	var cat router.FuncCatalog
	if *discover {
		pc, err := pgconn.ParseConfig(cfg.Primary)
		if err != nil {
			fmt.Fprintf(stderr, "txlane explain: primary: %v\n", err)
			return exitFailure
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		snap, err := catalog.Discover(ctx, pc)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "txlane explain: reading the catalog: %v\n", err)
			return exitFailure
		}
		discovered = snap.VectorTables
		cat = router.NewCatalog(snap.Objects)
	}
	rules, err := explainRules(cfg, discovered)
	if err != nil {
		fmt.Fprintf(stderr, "txlane explain: policy: %v\n", err)
		return exitFailure
	}
	spec := inTx.level
	if *state != "" {
		spec = *state
	}
	st, err := policy.ParseStateSpec(spec)
	if err != nil {
		fmt.Fprintf(stderr, "txlane explain: %v\n", err)
		return exitUsageErr
	}
	path2, err := policy.ParseSearchPath(*searchPath)
	if err != nil {
		fmt.Fprintf(stderr, "txlane explain: --search-path: %v\n", err)
		return exitUsageErr
	}
	cl := router.NewClassifier(router.ConfigFromRules(rules, cat))
	e := router.Explain(cl, sql, &st, rules, policy.ExpandSearchPath(path2, *user))
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(e)
		return exitOK
	}
	printExplanation(stdout, e)
	return exitOK
}

// explainRules builds the rules explain decides under: the server's own
// mapping of the configuration (config.Config.RulesConfig, as proxyOptions
// passes it to the proxy), plus the tables --discover found.
func explainRules(cfg *config.Config, discovered []policy.Table) (*policy.Rules, error) {
	rc := cfg.RulesConfig()
	rc.Discovered = discovered
	return policy.NewRules(rc)
}

func printExplanation(w io.Writer, e router.Explanation) {
	lastPart := ""
	for _, kv := range e.Lines() {
		key, value := kv[0], kv[1]
		// The lines of a part carry a "part N: " prefix: print it once, as a
		// heading, and indent what follows.
		part, rest, ok := strings.Cut(key, ": ")
		indent := ""
		if ok && strings.HasPrefix(part, "part ") {
			if part != lastPart {
				fmt.Fprintf(w, "%s:\n", part)
				lastPart = part
			}
			indent, key = "  ", rest
		}
		fmt.Fprintf(w, "%s%-14s %s\n", indent, key+":", value)
	}
}
