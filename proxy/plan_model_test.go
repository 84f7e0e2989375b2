package proxy

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// These tests need no PostgreSQL: they pin the planner, the one reader of a
// request's messages, against a small model of what the server executes.

// testRouting is a routing snapshot with vector table items.
func testRouting(t testing.TB) func() *routing {
	rules, err := policy.NewRules(policy.RulesConfig{VectorTables: []string{"items"}})
	if err != nil {
		t.Fatal(err)
	}
	rt := &routing{classifier: router.NewClassifier(router.ConfigFromRules(rules, nil)), rules: rules}
	return func() *routing { return rt }
}

// planMsgs runs msgs, one request, through a planner as the session does.
func planMsgs(t testing.TB, p *planner, safe bool, msgs ...pgproto3.FrontendMessage) *requestPlan {
	t.Helper()
	p.begin(safe, safe)
	var b batch
	for _, m := range msgs {
		raw, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		planNext(t, p, &b, wire.NewReader[wire.Frontend](strings.NewReader(string(raw)), 0))
	}
	return &p.cur
}

// planNext reads the next message of r into b and plans it, as the session
// does. (No t.Helper: BenchmarkPlanAndDecide times it.)
func planNext(t testing.TB, p *planner, b *batch, r *wire.Reader[wire.Frontend]) {
	typ, _, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.add(typ, r); err != nil {
		t.Fatal(err)
	}
	p.add(&b.msgs[len(b.msgs)-1], b.sql)
}

func stepTexts(pl *requestPlan) []string {
	var out []string
	for _, st := range pl.steps {
		if st.stmt == opaqueStmt {
			out = append(out, "<opaque>")
		} else {
			out = append(out, st.sql)
		}
	}
	return out
}

func TestPlanNamedPortals(t *testing.T) {
	p := newPlanner(newRegistry(), testRouting(t))
	pl := planMsgs(t, p, true,
		&pgproto3.Parse{Name: "w", Query: "INSERT INTO t VALUES (1)"},
		&pgproto3.Parse{Name: "r", Query: "SELECT 1"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "w"},
		&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "r"},
		&pgproto3.Execute{Portal: "p1"}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
	if got, want := stepTexts(pl), []string{"INSERT INTO t VALUES (1)", "SELECT 1"}; !slices.Equal(got, want) {
		t.Fatalf("steps %q, want %q", got, want)
	}
	if pl.laneShape {
		t.Error("named portals must keep the request on the primary")
	}
}

func TestPlanLaneShapes(t *testing.T) {
	read := "SELECT id FROM items WHERE id = $1"
	for _, c := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
		lane bool
	}{
		{"unnamed", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: read}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}, true},
		{"partial execute", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: read}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{}}, false},
		{"execute without bind", []pgproto3.FrontendMessage{&pgproto3.Execute{}, &pgproto3.Sync{}}, false},
		{"close", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: read}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}}, false},
		{"unknown statement", []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, false},
		{"function call", []pgproto3.FrontendMessage{&pgproto3.FunctionCall{Function: 1}}, false},
	} {
		p := newPlanner(newRegistry(), testRouting(t))
		if pl := planMsgs(t, p, true, c.msgs...); pl.laneShape != c.lane {
			t.Errorf("%s: laneShape %v, want %v", c.name, pl.laneShape, c.lane)
		}
	}
	// A Parse of a statement that can only run on the primary binds the request there.
	p := newPlanner(newRegistry(), testRouting(t))
	pl := planMsgs(t, p, true, &pgproto3.Parse{Query: "SELECT $1::varchar"})
	if !pl.parsedPrimary || pl.parsedReason != policy.ReasonNotVectorRead {
		t.Errorf("parse of a plain read: parsedPrimary %v %v", pl.parsedPrimary, pl.parsedReason)
	}
	pl = planMsgs(t, p, true, &pgproto3.Parse{Query: read})
	if pl.parsedPrimary {
		t.Error("parse of a vector read bound the request to the primary")
	}
}

// TestPlanPipelineOrder: definitions of requests the server has not
// confirmed yet are seen by later requests in pipeline order.
func TestPlanPipelineOrder(t *testing.T) {
	reg := newRegistry()
	p := newPlanner(reg, testRouting(t))
	planMsgs(t, p, true, &pgproto3.Parse{Name: "s3", Query: "SELECT 3"},
		&pgproto3.Parse{Query: "DEALLOCATE ALL"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	pl := planMsgs(t, p, false, &pgproto3.Bind{PreparedStatement: "s3"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := stepTexts(pl); !slices.Equal(got, []string{"<opaque>"}) {
		t.Fatalf("s3 after DEALLOCATE ALL resolved to %q", got)
	}
	planMsgs(t, p, false, &pgproto3.Parse{Name: "s4", Query: "SELECT 4"}, &pgproto3.Sync{})
	pl = planMsgs(t, p, false, &pgproto3.Bind{PreparedStatement: "s4"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := stepTexts(pl); !slices.Equal(got, []string{"SELECT 4"}) {
		t.Fatalf("s4 defined by an unconfirmed request resolved to %q", got)
	}
}

// TestPlanUncertainUnnamed: when a pipelined request that redefined the
// unnamed statement may have failed before doing so, the server may still
// run the old statement: the plan counts the step as anything, with the
// units of work of both.
func TestPlanUncertainUnnamed(t *testing.T) {
	reg := newRegistry()
	reg.stmts[""] = &preparedStmt{sql: "INSERT INTO t VALUES (1) /*unit='u1'*/"}
	p := newPlanner(reg, testRouting(t))
	planMsgs(t, p, true, &pgproto3.Parse{Name: "x", Query: "SELECT ("}, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{})
	pl := planMsgs(t, p, false, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if len(pl.steps) != 1 || pl.steps[0].stmt != opaqueStmt {
		t.Fatalf("steps %q, want one opaque step", stepTexts(pl))
	}
	if !slices.Contains(pl.units, "u1") {
		t.Fatalf("units %q lack the older statement's u1", pl.units)
	}
}

// stmtModel is what the server does with statements and portals (no
// explicit transactions: every Sync ends the implicit one).
type stmtModel struct {
	stmts   map[string]string
	portals map[string]string
	failed  bool // skipping to Sync
	ran     []string
}

func (m *stmtModel) apply(msg pgproto3.FrontendMessage) {
	if _, ok := msg.(*pgproto3.Sync); ok {
		m.failed = false
		clear(m.portals)
		return
	}
	if m.failed {
		return
	}
	switch x := msg.(type) {
	case *pgproto3.Parse:
		if _, ok := m.stmts[x.Name]; ok && x.Name != "" {
			m.failed = true
			return
		}
		if x.Query == "SELECT (" {
			// A syntax error; the unnamed statement is dropped all the same.
			if x.Name == "" {
				delete(m.stmts, "")
			}
			m.failed = true
			return
		}
		m.stmts[x.Name] = x.Query
	case *pgproto3.Bind:
		sql, ok := m.stmts[x.PreparedStatement]
		if !ok {
			m.failed = true
			return
		}
		if _, ok := m.portals[x.DestinationPortal]; ok && x.DestinationPortal != "" {
			m.failed = true
			return
		}
		m.portals[x.DestinationPortal] = sql
	case *pgproto3.Execute:
		sql, ok := m.portals[x.Portal]
		if !ok {
			m.failed = true
			return
		}
		m.ran = append(m.ran, sql)
		switch {
		case sql == "DEALLOCATE ALL":
			clear(m.stmts)
		case strings.HasPrefix(sql, "DEALLOCATE "):
			delete(m.stmts, strings.TrimPrefix(sql, "DEALLOCATE "))
		case strings.HasPrefix(sql, "INSERT") && strings.Contains(sql, "fail"):
			m.failed = true // a statement that errors
		}
	case *pgproto3.Describe:
		var ok bool
		if x.ObjectType == 'S' {
			_, ok = m.stmts[x.Name]
		} else {
			_, ok = m.portals[x.Name]
		}
		m.failed = !ok
	case *pgproto3.Close:
		if x.ObjectType == 'S' {
			delete(m.stmts, x.Name)
		} else {
			delete(m.portals, x.Name)
		}
	}
}

// TestPlanRandomizedAgainstModel: over random sequences of requests with
// named and unnamed statements and portals, Close, Flush, DEALLOCATE and
// failing statements, the statements the server runs in a request are
// always a prefix of the planner's steps (the plan assumes success), and
// equal to them when nothing failed. That is what lets the checks trust the
// plan: no statement runs that the plan did not name, in that order.
func TestPlanRandomizedAgainstModel(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	names := []string{"", "a", "b"}
	portals := []string{"", "p", "q"}
	texts := []string{"SELECT 1", "SELECT id FROM items", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES ('fail')", "DEALLOCATE ALL", "DEALLOCATE a", "UPDATE t SET x = 1", "SELECT ("}
	for round := 0; round < 300; round++ {
		reg := newRegistry()
		p := newPlanner(reg, testRouting(t))
		model := &stmtModel{stmts: map[string]string{}, portals: map[string]string{}}
		// Requests are planned in pipelines of 1-3 before the "server"
		// confirms them (the registry then takes the model's statements).
		for req := 0; req < 8; req++ {
			n := 1 + rng.Intn(7)
			var msgs []pgproto3.FrontendMessage
			for i := 0; i < n; i++ {
				switch rng.Intn(7) {
				case 0, 1:
					msgs = append(msgs, &pgproto3.Parse{Name: names[rng.Intn(3)], Query: texts[rng.Intn(len(texts))]})
				case 2:
					msgs = append(msgs, &pgproto3.Bind{DestinationPortal: portals[rng.Intn(3)], PreparedStatement: names[rng.Intn(3)]})
				case 3, 4:
					msgs = append(msgs, &pgproto3.Execute{Portal: portals[rng.Intn(3)]})
				case 5:
					kind := byte('S')
					if rng.Intn(2) == 0 {
						kind = 'P'
					}
					msgs = append(msgs, &pgproto3.Close{ObjectType: kind, Name: names[rng.Intn(3)]})
				case 6:
					msgs = append(msgs, &pgproto3.Flush{}, &pgproto3.Describe{ObjectType: 'S', Name: names[rng.Intn(3)]})
				}
			}
			msgs = append(msgs, &pgproto3.Sync{})
			safe := req%3 == 0
			if safe {
				// The server answered everything: the registry is the truth.
				reg.mu.Lock()
				clear(reg.stmts)
				for name, sql := range model.stmts {
					reg.stmts[name] = &preparedStmt{sql: sql}
				}
				reg.mu.Unlock()
			}
			pl := planMsgs(t, p, safe, msgs...)
			model.ran = nil
			failed := false
			for _, m := range msgs {
				model.apply(m)
				failed = failed || model.failed
			}
			got := stepTexts(pl)
			if !isPrefix(model.ran, got) {
				t.Fatalf("seed %d round %d request %d %s:\nserver ran %q\nplan says  %q", seed, round, req, describeMsgs(msgs), model.ran, got)
			}
			if safe && !failed && !slices.Equal(got, model.ran) {
				t.Fatalf("seed %d round %d request %d %s: nothing failed, yet server ran %q and plan says %q", seed, round, req, describeMsgs(msgs), model.ran, got)
			}
		}
	}
}

// isPrefix reports whether ran is a prefix of plan, an opaque step matching
// any statement.
func isPrefix(ran, plan []string) bool {
	if len(ran) > len(plan) {
		return false
	}
	for i, sql := range ran {
		if plan[i] != sql && plan[i] != "<opaque>" {
			return false
		}
	}
	return true
}

func describeMsgs(msgs []pgproto3.FrontendMessage) string {
	var out []string
	for _, m := range msgs {
		switch x := m.(type) {
		case *pgproto3.Parse:
			out = append(out, fmt.Sprintf("Parse(%q,%q)", x.Name, x.Query))
		case *pgproto3.Bind:
			out = append(out, fmt.Sprintf("Bind(%q<-%q)", x.DestinationPortal, x.PreparedStatement))
		case *pgproto3.Execute:
			out = append(out, fmt.Sprintf("Execute(%q)", x.Portal))
		case *pgproto3.Close:
			out = append(out, fmt.Sprintf("Close(%c,%q)", x.ObjectType, x.Name))
		default:
			out = append(out, fmt.Sprintf("%T", m)[len("*pgproto3."):])
		}
	}
	return strings.Join(out, " ")
}
