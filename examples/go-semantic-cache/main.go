package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"
)

// codeEscapedWrite is the SQLSTATE txlane answers a write that would escape
// another connection's open transaction for the same unit of work.
const codeEscapedWrite = "25L01"

// ---------------------------------------------------------------------------
// Units of work: a context value, sent as a sqlcommenter comment.

type unitKey struct{}

// WithUnit returns ctx carrying the unit of work unit (one request, one job).
func WithUnit(ctx context.Context, unit string) context.Context {
	return context.WithValue(ctx, unitKey{}, unit)
}

// UnitFrom returns the unit of work of ctx, "" if none.
func UnitFrom(ctx context.Context) string {
	u, _ := ctx.Value(unitKey{}).(string)
	return u
}

// Comment appends ctx's unit to sql as a sqlcommenter comment; the value is
// URL-encoded and its quotes escaped as the sqlcommenter spec asks.
func Comment(ctx context.Context, sql string) string {
	unit := UnitFrom(ctx)
	if unit == "" {
		return sql
	}
	v := strings.ReplaceAll(url.PathEscape(unit), "'", `\'`)
	return sql + " /*unit='" + v + "'*/"
}

// Querier is what *pgxpool.Pool, *pgxpool.Conn and pgx.Tx have in common.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Tagged sends every statement through Q with the context's unit appended.
// (A pgx QueryTracer sees the SQL but cannot change it; this wrapper can.)
type Tagged struct{ Q Querier }

func (t Tagged) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.Q.Exec(ctx, Comment(ctx, sql), args...)
}

func (t Tagged) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.Q.Query(ctx, Comment(ctx, sql), args...)
}

func (t Tagged) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.Q.QueryRow(ctx, Comment(ctx, sql), args...)
}

// InTx runs fn in a transaction of pool; fn's statements carry ctx's unit.
// fn returning an error rolls the transaction back.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(q Tagged) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(Tagged{tx}) })
}

// ---------------------------------------------------------------------------
// The stores.

// CreateUser inserts a user on the business side and returns its id.
func CreateUser(ctx context.Context, q Tagged, email string) (int, error) {
	var id int
	err := q.QueryRow(ctx, `INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id`, email, "example").Scan(&id)
	return id, err
}

// StoreOptimization records an optimization in the semantic cache.
func StoreOptimization(ctx context.Context, q Tagged, userID int, prompt string, emb pgvector.Vector) (int, error) {
	var id int
	err := q.QueryRow(ctx,
		`INSERT INTO optimization_logs (user_id, prompt, embedding) VALUES ($1, $2, $3) RETURNING id`,
		userID, prompt, emb).Scan(&id)
	return id, err
}

// Hit is one similar optimization.
type Hit struct {
	ID       int             `json:"id"`
	Prompt   string          `json:"prompt"`
	Vector   pgvector.Vector `json:"embedding"`
	Distance float64         `json:"distance"`
}

// FindSimilar returns the k optimizations nearest to emb (cosine distance).
func FindSimilar(ctx context.Context, q Tagged, emb pgvector.Vector, k int) ([]Hit, error) {
	rows, err := q.Query(ctx,
		`SELECT id, prompt, embedding, embedding <=> $1 AS distance
		   FROM optimization_logs ORDER BY embedding <=> $1 LIMIT $2`, emb, k)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Hit, error) {
		var h Hit
		err := r.Scan(&h.ID, &h.Prompt, &h.Vector, &h.Distance)
		return h, err
	})
}

// Embed is a stand-in for an embedding model: a deterministic unit vector of
// three dimensions from the words of text.
func Embed(text string) pgvector.Vector {
	v := make([]float32, 3)
	for _, w := range strings.Fields(strings.ToLower(text)) {
		h := fnv.New32a()
		h.Write([]byte(w))
		s := h.Sum32()
		v[s%3] += 1 + float32(s%7)/7
	}
	var n float64
	for _, x := range v {
		n += float64(x * x)
	}
	if n == 0 {
		v[0], n = 1, 1
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(n))
	}
	return pgvector.NewVector(v)
}

// ---------------------------------------------------------------------------
// Scenarios.

type app struct {
	business, cache *pgxpool.Pool
	run             string // makes units, emails and prompts unique per run
}

// Result is one scenario's outcome in the JSON summary.
type Result struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // approved | forbidden
	OK      bool   `json:"ok"`
	Detail  string `json:"detail,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Summary is what the program prints.
type Summary struct {
	Example   string   `json:"example"`
	Escape    string   `json:"escape"`
	OK        bool     `json:"ok"`
	Scenarios []Result `json:"scenarios"`
}

type scenario struct {
	name, kind string
	run        func(ctx context.Context, a *app) (detail string, err error)
}

func (a *app) unit(name string) string   { return "req-" + name + "-" + a.run }
func (a *app) email(name string) string  { return name + "-" + a.run + "@example.com" }
func (a *app) prompt(name string) string { return "optimize " + name + " " + a.run }
func (a *app) businessQ() Tagged         { return Tagged{a.business} }
func (a *app) cacheQ() Tagged            { return Tagged{a.cache} }
func (a *app) seed(ctx context.Context) error {
	for _, p := range []string{"summarize the quarterly report", "translate the release notes", "rank search results"} {
		if _, err := StoreOptimization(ctx, a.cacheQ(), 0, p+" "+a.run, Embed(p)); err != nil {
			return fmt.Errorf("seeding the cache: %w", err)
		}
	}
	return nil
}

// count returns how many rows of table match column = value, read without a
// unit (a committed-data view).
func (a *app) count(ctx context.Context, table, column, value string) (int, error) {
	var n int
	err := a.cache.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s = $1`, table, column), value).Scan(&n)
	return n, err
}

// cacheWriteInRollback is the forbidden pattern that reroute and allow both
// run, with opposite outcomes: under unit name, a business transaction
// creates a user, the cache pool stores an optimization for it, and the
// transaction rolls back. It checks that the user is gone; whether the cache
// row went with it is the caller's to check.
func (a *app) cacheWriteInRollback(ctx context.Context, name string) error {
	ctx = WithUnit(ctx, a.unit(name))
	err := InTx(ctx, a.business, func(tx Tagged) error {
		uid, err := CreateUser(ctx, tx, a.email(name))
		if err != nil {
			return err
		}
		if _, err := StoreOptimization(ctx, a.cacheQ(), uid, a.prompt(name), Embed(name)); err != nil {
			return fmt.Errorf("cache write: %w", err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		return err
	}
	return a.expectCount(ctx, "users", "email", a.email(name), 0)
}

func (a *app) expectCount(ctx context.Context, table, column, value string, want int) error {
	n, err := a.count(ctx, table, column, value)
	if err != nil {
		return fmt.Errorf("counting %s: %w", table, err)
	}
	if n != want {
		return fmt.Errorf("%s has %d rows with %s = %q, want %d", table, n, column, value, want)
	}
	return nil
}

// escapeError checks that err is txlane's refusal of a write to table in unit.
func escapeError(err error, table, unit string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("want SQLSTATE %s, got %v", codeEscapedWrite, err)
	}
	if pgErr.Code != codeEscapedWrite {
		return fmt.Errorf("want SQLSTATE %s, got %s: %s", codeEscapedWrite, pgErr.Code, pgErr.Message)
	}
	if !strings.Contains(pgErr.Message, table) || !strings.Contains(pgErr.Message, unit) {
		return fmt.Errorf("message %q does not name table %q and unit %q", pgErr.Message, table, unit)
	}
	if pgErr.Detail == "" || pgErr.Hint == "" {
		return fmt.Errorf("want a DETAIL and a HINT, got detail %q hint %q", pgErr.Detail, pgErr.Hint)
	}
	return nil
}

var errRollback = errors.New("roll back on purpose")

func approved() []scenario {
	return []scenario{
		{"vector read outside a transaction", "approved", func(ctx context.Context, a *app) (string, error) {
			ctx = WithUnit(ctx, a.unit("read-outside"))
			hits, err := FindSimilar(ctx, a.cacheQ(), Embed("summarize the quarterly report"), 3)
			if err != nil {
				return "", err
			}
			if len(hits) == 0 {
				return "", errors.New("no similar optimization found")
			}
			return fmt.Sprintf("%d hits, nearest %q", len(hits), hits[0].Prompt), nil
		}},
		{"vector reads inside a business transaction", "approved", func(ctx context.Context, a *app) (string, error) {
			ctx = WithUnit(ctx, a.unit("read-inside"))
			var n1, n2 int
			err := InTx(ctx, a.business, func(tx Tagged) error {
				if _, err := CreateUser(ctx, tx, a.email("read-inside")); err != nil {
					return err
				}
				// On the other pool, same unit: a read is never refused.
				hits, err := FindSimilar(ctx, a.cacheQ(), Embed("translate the release notes"), 3)
				if err != nil {
					return fmt.Errorf("cache pool read: %w", err)
				}
				n1 = len(hits)
				// In the transaction itself: a READ COMMITTED read of a vector
				// table the transaction has not written (txlane's vector lane).
				hits, err = FindSimilar(ctx, tx, Embed("rank search results"), 3)
				if err != nil {
					return fmt.Errorf("in-transaction read: %w", err)
				}
				n2 = len(hits)
				return nil
			})
			if err != nil {
				return "", err
			}
			if n1 == 0 || n2 == 0 {
				return "", fmt.Errorf("reads found %d and %d rows, want some", n1, n2)
			}
			return fmt.Sprintf("cache pool read %d rows, transaction read %d rows, committed", n1, n2),
				a.expectCount(ctx, "users", "email", a.email("read-inside"), 1)
		}},
		{"cache write after the transaction commits", "approved", func(ctx context.Context, a *app) (string, error) {
			ctx = WithUnit(ctx, a.unit("after-commit"))
			var uid int
			err := InTx(ctx, a.business, func(tx Tagged) (err error) {
				uid, err = CreateUser(ctx, tx, a.email("after-commit"))
				return err
			})
			if err != nil {
				return "", err
			}
			// The unit is released at COMMIT: the same unit may write the cache now.
			if _, err := StoreOptimization(ctx, a.cacheQ(), uid, a.prompt("after-commit"), Embed("after commit")); err != nil {
				return "", err
			}
			return "one row", a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("after-commit"), 1)
		}},
		{"concurrent independent work on both pools", "approved", func(ctx context.Context, a *app) (string, error) {
			// One request holds unit A in a transaction while another request
			// (unit B) and unit-less work write the cache.
			holding := make(chan struct{})
			release := make(chan struct{})
			errs := make(chan error, 16)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctxA := WithUnit(ctx, a.unit("concurrent-a"))
				errs <- InTx(ctxA, a.business, func(tx Tagged) error {
					_, err := CreateUser(ctxA, tx, a.email("concurrent-a"))
					close(holding)
					if err != nil {
						return err
					}
					<-release
					return nil
				})
			}()
			select {
			case <-holding:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			const n = 6
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					name := fmt.Sprintf("concurrent-b%d", i)
					c := ctx
					if i%2 == 0 {
						c = WithUnit(ctx, a.unit(name))
					}
					if _, err := StoreOptimization(c, a.cacheQ(), 0, a.prompt(name), Embed(name)); err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
					if _, err := FindSimilar(c, a.cacheQ(), Embed(name), 2); err != nil {
						errs <- fmt.Errorf("%s read: %w", name, err)
						return
					}
					errs <- InTx(c, a.business, func(tx Tagged) error {
						_, err := CreateUser(c, tx, a.email(name))
						return err
					})
				}()
			}
			// Let the independent work finish while A is still open, then commit A.
			var failed []string
			for range n {
				if err := <-errs; err != nil {
					failed = append(failed, err.Error())
				}
			}
			close(release)
			wg.Wait()
			if err := <-errs; err != nil {
				failed = append(failed, "holder: "+err.Error())
			}
			if len(failed) > 0 {
				return "", errors.New(strings.Join(failed, "; "))
			}
			for i := range n {
				if err := a.expectCount(ctx, "optimization_logs", "prompt", a.prompt(fmt.Sprintf("concurrent-b%d", i)), 1); err != nil {
					return "", err
				}
			}
			return fmt.Sprintf("%d independent requests while unit A was held", n), nil
		}},
	}
}

func forbidden(escape string) []scenario {
	switch escape {
	case "reject":
		return []scenario{
			{"cache write inside a business transaction is rejected", "forbidden", func(ctx context.Context, a *app) (string, error) {
				unit := a.unit("reject")
				ctx = WithUnit(ctx, unit)
				var writeErr error
				err := InTx(ctx, a.business, func(tx Tagged) error {
					uid, err := CreateUser(ctx, tx, a.email("reject"))
					if err != nil {
						return err
					}
					// The forbidden write: another pool, the same unit, while the
					// transaction is open.
					_, writeErr = StoreOptimization(ctx, a.cacheQ(), uid, a.prompt("reject"), Embed("reject"))
					return nil // the business transaction itself commits
				})
				if err != nil {
					return "", fmt.Errorf("business transaction: %w", err)
				}
				if err := escapeError(writeErr, "optimization_logs", unit); err != nil {
					return "", err
				}
				if err := a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reject"), 0); err != nil {
					return "", err
				}
				return "25L01: " + writeErr.Error(),
					a.expectCount(ctx, "users", "email", a.email("reject"), 1)
			}},
			{"business write inside a cache transaction is rejected", "forbidden", func(ctx context.Context, a *app) (string, error) {
				// The rule is symmetric: here the cache pool opened the transaction.
				unit := a.unit("reject-sym")
				ctx = WithUnit(ctx, unit)
				var writeErr error
				err := InTx(ctx, a.cache, func(tx Tagged) error {
					if _, err := StoreOptimization(ctx, tx, 0, a.prompt("reject-sym"), Embed("reject sym")); err != nil {
						return err
					}
					_, writeErr = CreateUser(ctx, a.businessQ(), a.email("reject-sym"))
					return errRollback
				})
				if !errors.Is(err, errRollback) {
					return "", fmt.Errorf("cache transaction: %v", err)
				}
				if err := escapeError(writeErr, "users", unit); err != nil {
					return "", err
				}
				if err := a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reject-sym"), 0); err != nil {
					return "", err
				}
				return "25L01: " + writeErr.Error(), a.expectCount(ctx, "users", "email", a.email("reject-sym"), 0)
			}},
		}
	case "reroute":
		return []scenario{
			{"rerouted cache write rolls back with the business transaction", "forbidden", func(ctx context.Context, a *app) (string, error) {
				if err := a.cacheWriteInRollback(ctx, "reroute-rollback"); err != nil {
					return "", err
				}
				return "holder rolled back: no row", a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-rollback"), 0)
			}},
			{"rerouted cache write commits with the business transaction", "forbidden", func(ctx context.Context, a *app) (string, error) {
				ctx = WithUnit(ctx, a.unit("reroute-commit"))
				var seen int
				err := InTx(ctx, a.business, func(tx Tagged) error {
					uid, err := CreateUser(ctx, tx, a.email("reroute-commit"))
					if err != nil {
						return err
					}
					if _, err := StoreOptimization(ctx, a.cacheQ(), uid, a.prompt("reroute-commit"), Embed("reroute")); err != nil {
						return fmt.Errorf("rerouted write: %w", err)
					}
					// Before COMMIT the row exists only inside the transaction.
					if err := a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-commit"), 0); err != nil {
						return fmt.Errorf("before commit, outside the unit: %w", err)
					}
					return tx.QueryRow(ctx, `SELECT count(*) FROM optimization_logs WHERE prompt = $1`, a.prompt("reroute-commit")).Scan(&seen)
				})
				if err != nil {
					return "", err
				}
				if seen != 1 {
					return "", fmt.Errorf("the transaction saw %d rerouted rows, want 1", seen)
				}
				if err := a.expectCount(ctx, "users", "email", a.email("reroute-commit"), 1); err != nil {
					return "", err
				}
				return "holder committed: exactly one row", a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-commit"), 1)
			}},
			{"reads in the unit follow a rerouted write", "forbidden", func(ctx context.Context, a *app) (string, error) {
				ctx = WithUnit(ctx, a.unit("reroute-ryw"))
				var seen int
				err := InTx(ctx, a.business, func(tx Tagged) error {
					if _, err := CreateUser(ctx, tx, a.email("reroute-ryw")); err != nil {
						return err
					}
					if _, err := StoreOptimization(ctx, a.cacheQ(), 0, a.prompt("reroute-ryw"), Embed("ryw")); err != nil {
						return fmt.Errorf("rerouted write: %w", err)
					}
					// Outside the unit the row is not there yet (not committed) ...
					if err := a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-ryw"), 0); err != nil {
						return fmt.Errorf("before commit, outside the unit: %w", err)
					}
					// ... but the cache pool, in the same unit, reads its own write.
					return a.cacheQ().QueryRow(ctx, `SELECT count(*) FROM optimization_logs WHERE prompt = $1`, a.prompt("reroute-ryw")).Scan(&seen)
				})
				if err != nil {
					return "", err
				}
				if seen != 1 {
					return "", fmt.Errorf("a read in the unit saw %d rerouted rows before commit, want 1", seen)
				}
				return "read-your-writes across pools", a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-ryw"), 1)
			}},
			{"a write from inside its own transaction is still rejected", "forbidden", func(ctx context.Context, a *app) (string, error) {
				unit := a.unit("reroute-own-tx")
				ctx = WithUnit(ctx, unit)
				var writeErr error
				err := InTx(ctx, a.business, func(tx Tagged) error {
					if _, err := CreateUser(ctx, tx, a.email("reroute-own-tx")); err != nil {
						return err
					}
					// The writer is in a transaction of its own: it cannot be
					// rerouted into the holder's, so it is rejected.
					writeErr = InTx(ctx, a.cache, func(own Tagged) error {
						_, err := StoreOptimization(ctx, own, 0, a.prompt("reroute-own-tx"), Embed("own tx"))
						return err
					})
					return nil
				})
				if err != nil {
					return "", fmt.Errorf("business transaction: %w", err)
				}
				if err := escapeError(writeErr, "optimization_logs", unit); err != nil {
					return "", err
				}
				return "25L01", a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("reroute-own-tx"), 0)
			}},
		}
	default: // allow: what happens without txlane's rule
		return []scenario{
			{"without the rule the cache write escapes the rollback", "forbidden", func(ctx context.Context, a *app) (string, error) {
				if err := a.cacheWriteInRollback(ctx, "escape"); err != nil {
					return "", err
				}
				// The bug txlane exists for: the user is gone, its cache row is not.
				return "the user rolled back, its cache row persisted",
					a.expectCount(ctx, "optimization_logs", "prompt", a.prompt("escape"), 1)
			}},
		}
	}
}

func newPool(ctx context.Context, dsn, name string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	cfg.MaxConns = 8
	return pgxpool.NewWithConfig(ctx, cfg)
}

func main() {
	dsn := flag.String("database-url", os.Getenv("DATABASE_URL"), "txlane's URL (default $DATABASE_URL)")
	escape := flag.String("escape", envOr("TXLANE_ESCAPE", "reject"), "txlane's policy.escape: reject, reroute or allow (default $TXLANE_ESCAPE or reject)")
	timeout := flag.Duration("timeout", 30*time.Second, "time limit of each scenario")
	flag.Parse()
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "go-semantic-cache: set DATABASE_URL or -database-url")
		os.Exit(2)
	}
	switch *escape {
	case "reject", "reroute", "allow":
	case "log":
		*escape = "allow"
	default:
		fmt.Fprintf(os.Stderr, "go-semantic-cache: -escape %q: want reject, reroute or allow\n", *escape)
		os.Exit(2)
	}

	ctx := context.Background()
	business, err := newPool(ctx, *dsn, "business")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-semantic-cache:", err)
		os.Exit(1)
	}
	defer business.Close()
	cache, err := newPool(ctx, *dsn, "cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-semantic-cache:", err)
		os.Exit(1)
	}
	defer cache.Close()
	a := &app{business: business, cache: cache, run: fmt.Sprintf("%x", rand.Uint64())[:8]}

	sum := Summary{Example: "go-semantic-cache", Escape: *escape, OK: true}
	sctx, cancel := context.WithTimeout(ctx, *timeout)
	err = a.seed(sctx)
	cancel()
	if err != nil {
		sum.OK = false
		sum.Scenarios = append(sum.Scenarios, Result{Name: "seed", Kind: "approved", Problem: err.Error()})
	} else {
		for _, s := range append(approved(), forbidden(*escape)...) {
			sctx, cancel := context.WithTimeout(ctx, *timeout)
			detail, err := s.run(sctx, a)
			cancel()
			r := Result{Name: s.name, Kind: s.kind, OK: err == nil, Detail: detail}
			if err != nil {
				r.Problem = err.Error()
				sum.OK = false
			}
			sum.Scenarios = append(sum.Scenarios, r)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(sum)
	if !sum.OK {
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
