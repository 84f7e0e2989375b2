package sqlguard

import (
	"encoding/json"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Unqualified returns what in sql a session's search_path could resolve to
// another object than pg_catalog's, one finding per occurrence ("operator
// =", "function count", "type text", "relation t", ...), or an error when sql
// does not parse. What PostgreSQL's grammar qualifies itself (int, boolean,
// EXTRACT, COALESCE, current_user, ...) passes; so do names of WITH queries,
// string literals cast to reg* types that name a schema, and the bodies of
// DO blocks in PL/pgSQL, which are read statement by statement.
//
// Every operator must be written OPERATOR(pg_catalog.op): the shorthands that
// use an operator by name (IN, NOT IN, LIKE, IS DISTINCT FROM, NULLIF,
// BETWEEN, CASE x WHEN, an IN or NOT IN subquery, ORDER BY ... USING) are
// findings too.
func Unqualified(sql string) ([]string, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, err
	}
	var out []string
	ctes := map[string]bool{}
	walk(tree.ProtoReflect(), func(m protoreflect.ProtoMessage) {
		if c, ok := m.(*pg.CommonTableExpr); ok {
			ctes[c.Ctename] = true
		}
	})
	var inner []string
	walk(tree.ProtoReflect(), func(m protoreflect.ProtoMessage) {
		switch n := m.(type) {
		case *pg.A_Expr:
			switch n.Kind {
			case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
				if !catalogName(n.Name) {
					out = append(out, "operator "+joined(n.Name))
				}
			default:
				// IN, LIKE, DISTINCT, NULLIF, BETWEEN, SIMILAR: the
				// operator is looked up by its bare name.
				out = append(out, fmt.Sprintf("%s (operator %s)", strings.TrimPrefix(n.Kind.String(), "AEXPR_"), joined(n.Name)))
			}
		case *pg.SubLink:
			switch {
			case n.SubLinkType == pg.SubLinkType_ANY_SUBLINK && len(n.OperName) == 0:
				out = append(out, "IN subquery (operator =)") // the grammar's mark of IN
			case len(n.OperName) > 0 && !catalogName(n.OperName):
				out = append(out, "subquery operator "+joined(n.OperName))
			}
		case *pg.CaseExpr:
			if n.Arg != nil {
				out = append(out, "CASE x WHEN (operator =)")
			}
		case *pg.SortBy:
			if len(n.UseOp) > 0 && !catalogName(n.UseOp) {
				out = append(out, "ORDER BY USING "+joined(n.UseOp))
			}
		case *pg.FuncCall:
			if !catalogName(n.Funcname) {
				out = append(out, "function "+joined(n.Funcname))
			}
		case *pg.TypeName:
			if !catalogName(n.Names) {
				out = append(out, "type "+joined(n.Names))
			}
		case *pg.RangeVar:
			if n.Schemaname == "" && !ctes[n.Relname] {
				out = append(out, "relation "+n.Relname)
			}
		case *pg.TypeCast:
			// 'name'::regclass and kin look the name up through the
			// search_path unless it names its schema.
			if c := n.Arg.GetAConst(); c != nil && c.GetSval() != nil && n.TypeName != nil {
				t := joined(n.TypeName.Names)
				if strings.HasPrefix(t, "pg_catalog.reg") && t != "pg_catalog.regnamespace" && t != "pg_catalog.regrole" &&
					!strings.Contains(c.GetSval().Sval, ".") {
					out = append(out, fmt.Sprintf("%s literal %q", t, c.GetSval().Sval))
				}
			}
		case *pg.DoStmt:
			found, err := plpgsql(n)
			if err != nil {
				inner = append(inner, "DO block: "+err.Error())
			}
			inner = append(inner, found...)
		}
	})
	return append(out, inner...), nil
}

// plpgsql returns the findings in a DO block's PL/pgSQL body: its
// declarations' types and every statement and expression in it.
func plpgsql(n *pg.DoStmt) ([]string, error) {
	body, lang := "", "plpgsql"
	for _, a := range n.Args {
		d := a.GetDefElem()
		if d == nil {
			continue
		}
		switch d.Defname {
		case "as":
			body = d.Arg.GetString_().GetSval()
		case "language":
			lang = d.Arg.GetString_().GetSval()
		}
	}
	if lang != "plpgsql" {
		return nil, fmt.Errorf("language %s is not read", lang)
	}
	tree, err := pg.ParsePlPgSqlToJSON("CREATE FUNCTION pg_temp.sqlguard() RETURNS void LANGUAGE plpgsql AS " + dollarQuote(body))
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal([]byte(tree), &v); err != nil {
		return nil, err
	}
	var out []string
	var visit func(v any) error
	visit = func(v any) error {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				if err := visit(e); err != nil {
					return err
				}
			}
		case map[string]any:
			if t, ok := x["PLpgSQL_type"].(map[string]any); ok {
				if name, _ := t["typname"].(string); !strings.HasPrefix(name, "pg_catalog.") {
					out = append(out, "PL/pgSQL type "+name)
				}
			}
			if e, ok := x["PLpgSQL_expr"].(map[string]any); ok {
				q, _ := e["query"].(string)
				if mode, _ := e["parseMode"].(float64); mode != 0 {
					q = "SELECT " + q // an expression, not a statement
				}
				found, err := Unqualified(q)
				if err != nil {
					return fmt.Errorf("%q: %w", q, err)
				}
				out = append(out, found...)
			}
			for _, e := range x {
				if err := visit(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, visit(v)
}

// dollarQuote quotes body with a tag it does not contain.
func dollarQuote(body string) string {
	tag := "$sqlguard$"
	for strings.Contains(body, tag) {
		tag = "$" + strings.Trim(tag, "$") + "x$"
	}
	return tag + body + tag
}

// catalogName reports whether a name list is pg_catalog.name.
func catalogName(names []*pg.Node) bool {
	return len(names) == 2 && names[0].GetString_().GetSval() == "pg_catalog"
}

// joined spells a name list as schema.name.
func joined(names []*pg.Node) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n.GetString_().GetSval()
	}
	return strings.Join(parts, ".")
}

// walk calls f for m and every message below it.
func walk(m protoreflect.Message, f func(protoreflect.ProtoMessage)) {
	f(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() || fd.Message() == nil:
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				walk(l.Get(i).Message(), f)
			}
		default:
			walk(v.Message(), f)
		}
		return true
	})
}
