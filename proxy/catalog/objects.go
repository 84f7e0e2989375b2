package catalog

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// objectsSQL reads what classification needs to see what SQL text
// hides (router.CatalogObjects): every function with its volatility, every
// relation, and, by OID, what runs when they are used:
//
//	k    a (oid)  b (oid)  s, n            x                 via
//	r    rel               schema, name    relkind           why opaque
//	f    proc              schema, name    volatility+kind+o (o: opaque body)
//	uf   rel      proc                     when              user
//	ur   rel      rel                      when              user
//	l    rel                               rule events       rule name
//	t    rel      proc                     trigger events    trigger name (user triggers, and
//	                                                         their clones on partitions)
//	q    rel                               trigger events    constraint (or trigger) name: a
//	                                                         deferrable trigger, internal ones too
//	k    rel      rel                      deltype+updtype   constraint (a is referenced by b)
//	c    rel      rel                                        (b is a partition or child of a)
//	ff   proc     proc                                       (a runs b)
//	fr   proc     rel                                        (a's body reads b)
//	b    proc              language, args  result            body (PL/pgSQL or an SQL string)
//	o    proc/''           schema, name                      operator and one of its functions
//	x    proc              type schema, type name context  source type
//	h    proc                              c or ''           where it runs (c: a domain's check)
//
//	ut   rel                               r                 user (uses CURRENT_TIMESTAMP & co.)
//	ub   rel                               r                 user (uses SESSION_USER)
//
// q rows are the triggers PostgreSQL may run only at the transaction's end
// (pg_trigger.tgdeferrable; "CREATE TRIGGER", "SET CONSTRAINTS"): a
// DEFERRABLE foreign key's checks on the referencing table (insert, update)
// and its NO ACTION checks on the referenced one (update, delete: the
// triggers of the other referential actions are never deferrable), a
// DEFERRABLE unique or exclusion constraint's recheck (insert, update), a
// constraint trigger created DEFERRABLE. INITIALLY IMMEDIATE ones count too:
// SET CONSTRAINTS ... DEFERRED defers them.
// (b: the body of a function outside pg_catalog and information_schema in
// PL/pgSQL or in SQL as a string, at most router.MaxBodyBytes, with the
// signature the PL/pgSQL compiler needs; read with router.ReadFunctionBody,
// and when it reads, the function's body is no longer opaque. A language
// counts as PL/pgSQL only with PL/pgSQL's own call handler.)
//
// (ut and ub: such SQL-standard values are no function call, so pg_depend
// does not record them; the definition's text is searched, which can only
// err toward the primary.)
//
// "when" is r (whenever the relation is read or written: a view's
// definition, a row-level security policy), w (insert or update: a default
// or generated column, a check constraint, an index expression or
// predicate), m (refresh of a materialized view), or l followed by the
// rule's event (a non-SELECT rule: li, lu, ld).
//
// Calls come from pg_depend and from the stored expressions (pg_node_tree
// text of views and rules, policies, defaults, check constraints of tables
// and domains, indexes, SQL-standard function bodies and argument
// defaults): pg_depend records no dependency on a pinned object, which
// every function of PostgreSQL's own catalog is (set_config, nextval,
// pg_advisory_lock, lo_from_bytea; "pg_depend", PostgreSQL's catalog
// documentation). A call is a FuncExpr's funcid, an OpExpr's (and its
// kin's) opfuncid, an Aggref's aggfnoid or a WindowFunc's winfnoid; on
// PostgreSQL 15, CURRENT_USER, CURRENT_ROLE, USER and SESSION_USER are
// SQLValueFunctions (ops 9 to 12), read as calls of current_user() and
// session_user(), which later versions store. Rules and views of
// pg_catalog and information_schema are not searched (they are trusted),
// except their non-SELECT rules (pg_settings' UPDATE rule calls
// set_config).
//
// An identity column counts as a default calling pg_catalog.nextval: the
// server draws its values from the column's sequence (a NextValueExpr, no
// function call in any stored tree), which sets the session's currval and
// lastval as a serial column's default does.
//
// Temporary relations of every session are included (as pg_temp_N.name):
// a session's CREATE TEMP TABLE is DDL, after which the catalog is read
// again, so its own temporary tables, their triggers and rules are known.
//
// It is one statement, so one snapshot: a relation and what it depends on
// are read together (a view created meanwhile is either absent, hence
// unproven, or complete). Functions in pg_catalog that are not volatile are
// left out of operator, cast and call rows, unless routing names them
// (router.NotableBuiltinNames: now(), current_setting(), current_user(),
// ...): they run nothing else and write nothing, and leaving them out keeps
// the answer small.
var objectsSQL = strings.NewReplacer(
	"NOTABLE_NAMES", quoteLiteral("{"+strings.Join(router.NotableBuiltinNames(), ",")+"}"),
	"NOTABLE_PATTERN", quoteLiteral(router.NotableBuiltinPattern()),
	"MAX_BODY_BYTES", strconv.Itoa(router.MaxBodyBytes)).Replace(objectsSQLText)

const objectsSQLText = `WITH ixs AS (
  SELECT i.indexrelid, i.indrelid, pg_catalog.concat(i.indexprs::pg_catalog.text, ' ', i.indpred::pg_catalog.text) AS t
  FROM pg_catalog.pg_index i WHERE i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
), boring AS (
  -- Functions that run nothing else and write nothing, and whose value
  -- routing does not care about (router.NotableBuiltinPattern).
  SELECT p.oid FROM pg_catalog.pg_proc p
  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace AND p.provolatile OPERATOR(pg_catalog.<>) 'v'
    AND p.proname OPERATOR(pg_catalog.<>) ALL (NOTABLE_NAMES::pg_catalog.name[]) AND p.proname::pg_catalog.text OPERATOR(pg_catalog.!~) NOTABLE_PATTERN
), dep AS (
  SELECT d.classid, d.objid, d.refclassid, d.refobjid
  FROM pg_catalog.pg_depend d
  WHERE d.deptype OPERATOR(pg_catalog.=) 'n'
    AND (d.classid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_policy'::pg_catalog.regclass,
                       'pg_catalog.pg_attrdef'::pg_catalog.regclass, 'pg_catalog.pg_constraint'::pg_catalog.regclass,
                       'pg_catalog.pg_proc'::pg_catalog.regclass])
         OR d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ANY (SELECT indexrelid FROM ixs))
    AND d.refclassid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass,
                         'pg_catalog.pg_class'::pg_catalog.regclass])
), tree AS (
  -- The stored expressions of what uses functions. pg_depend records no
  -- dependency on a pinned object (PostgreSQL's own functions: set_config,
  -- nextval, ...), so their calls are read from the node trees.
  SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass AS classid, r.oid AS objid,
         pg_catalog.concat(r.ev_action::pg_catalog.text, ' ', r.ev_qual::pg_catalog.text) AS t
  FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
  WHERE r.rulename OPERATOR(pg_catalog.<>) '_RETURN'
     OR c.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace])
  UNION ALL
  SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, p.oid, pg_catalog.concat(p.polqual::pg_catalog.text, ' ', p.polwithcheck::pg_catalog.text)
  FROM pg_catalog.pg_policy p
  UNION ALL
  SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid, a.adbin::pg_catalog.text FROM pg_catalog.pg_attrdef a
  UNION ALL
  SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, k.conbin::pg_catalog.text
  FROM pg_catalog.pg_constraint k WHERE k.contype OPERATOR(pg_catalog.=) 'c'
  UNION ALL
  SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, pg_catalog.concat(p.prosqlbody::pg_catalog.text, ' ', p.proargdefaults::pg_catalog.text)
  FROM pg_catalog.pg_proc p
  WHERE (p.prosqlbody IS NOT NULL OR p.proargdefaults IS NOT NULL)
    AND p.pronamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace])
  UNION ALL
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, x.indexrelid, x.t FROM ixs x
), tree_f AS (
  -- Calls (FuncExpr, OpExpr and kin, Aggref, WindowFunc) of functions
  -- routing cares about, and, as PostgreSQL 15 stores them, CURRENT_USER,
  -- CURRENT_ROLE, USER (op 9 to 11) and SESSION_USER (12) as the functions
  -- later versions store.
  SELECT t.classid, t.objid, m[1]::pg_catalog.oid AS f
  FROM tree t, LATERAL pg_catalog.regexp_matches(t.t, ':(?:funcid|opfuncid|aggfnoid|winfnoid) (\d+)', 'g') AS m
  UNION
  SELECT t.classid, t.objid,
         CASE WHEN m[1] OPERATOR(pg_catalog.=) '12' THEN 'pg_catalog.session_user()'::pg_catalog.regprocedure
              ELSE 'pg_catalog.current_user()'::pg_catalog.regprocedure END::pg_catalog.oid
  FROM tree t, LATERAL pg_catalog.regexp_matches(t.t, '\{SQLVALUEFUNCTION :op (9|10|11|12) ', 'g') AS m
), dep_to AS (
  SELECT d.classid, d.objid, 'f' AS kind, d.refobjid AS ref
  FROM dep d WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
  UNION
  SELECT d.classid, d.objid, 'f', u.f
  FROM dep d JOIN pg_catalog.pg_operator o ON o.oid OPERATOR(pg_catalog.=) d.refobjid,
       LATERAL pg_catalog.unnest(ARRAY[o.oprcode::pg_catalog.oid, o.oprrest, o.oprjoin]) AS u(f)
  WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass AND u.f OPERATOR(pg_catalog.<>) 0
  UNION
  SELECT d.classid, d.objid, 'r', d.refobjid
  FROM dep d WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
  UNION
  SELECT t.classid, t.objid, 'f', t.f FROM tree_f t WHERE NOT (t.f OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring))
), owner AS (
  SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass AS classid, r.oid AS objid, r.ev_class AS rel,
         CASE WHEN r.rulename OPERATOR(pg_catalog.<>) '_RETURN'
              THEN 'l' OPERATOR(pg_catalog.||) CASE WHEN r.ev_type OPERATOR(pg_catalog.=) '2' THEN 'u' WHEN r.ev_type OPERATOR(pg_catalog.=) '3' THEN 'i'
                                        WHEN r.ev_type OPERATOR(pg_catalog.=) '4' THEN 'd' ELSE 'iud' END
              WHEN c.relkind OPERATOR(pg_catalog.=) 'm' THEN 'm' ELSE 'r' END AS w,
         CASE WHEN r.rulename OPERATOR(pg_catalog.=) '_RETURN' THEN 'definition' ELSE r.rulename::pg_catalog.text END AS via
  FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
  UNION ALL
  SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, p.oid, p.polrelid, 'r', 'row-level security policy ' OPERATOR(pg_catalog.||) p.polname
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
  WHERE c.relrowsecurity
  UNION ALL
  SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid, a.adrelid, 'w', 'default of column ' OPERATOR(pg_catalog.||) t.attname
  FROM pg_catalog.pg_attrdef a
  JOIN pg_catalog.pg_attribute t ON t.attrelid OPERATOR(pg_catalog.=) a.adrelid AND t.attnum OPERATOR(pg_catalog.=) a.adnum
  UNION ALL
  SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, k.conrelid, 'w', 'constraint ' OPERATOR(pg_catalog.||) k.conname
  FROM pg_catalog.pg_constraint k WHERE k.contype OPERATOR(pg_catalog.=) 'c' AND k.conrelid OPERATOR(pg_catalog.<>) 0
  UNION ALL
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, x.indexrelid, x.indrelid, 'w', 'index ' OPERATOR(pg_catalog.||) c.relname
  FROM ixs x JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) x.indexrelid
), vol AS (
  SELECT p.oid, p.prolang FROM pg_catalog.pg_proc p WHERE p.provolatile OPERATOR(pg_catalog.=) 'v'
), trg AS (
  -- Enabled triggers with the events that fire them (tgtype's bits).
  SELECT t.tgrelid, t.tgfoid, t.tgname, t.tgisinternal, t.tgparentid, t.tgconstraint, t.tgdeferrable,
         CASE WHEN (t.tgtype OPERATOR(pg_catalog.&) 4) OPERATOR(pg_catalog.<>) 0 THEN 'i' ELSE '' END OPERATOR(pg_catalog.||)
         CASE WHEN (t.tgtype OPERATOR(pg_catalog.&) 16) OPERATOR(pg_catalog.<>) 0 THEN 'u' ELSE '' END OPERATOR(pg_catalog.||)
         CASE WHEN (t.tgtype OPERATOR(pg_catalog.&) 8) OPERATOR(pg_catalog.<>) 0 THEN 'd' ELSE '' END OPERATOR(pg_catalog.||)
         CASE WHEN (t.tgtype OPERATOR(pg_catalog.&) 32) OPERATOR(pg_catalog.<>) 0 THEN 't' ELSE '' END AS ev
  FROM pg_catalog.pg_trigger t WHERE t.tgenabled OPERATOR(pg_catalog.<>) 'D'
), user_views AS MATERIALIZED (
  -- Materialized so that pg_get_viewdef runs for these only, not for every
  -- view the planner would filter afterwards.
  SELECT c.oid FROM pg_catalog.pg_class c
  WHERE c.relkind OPERATOR(pg_catalog.=) 'v'
    AND c.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace])
)
SELECT 'r' AS k, c.oid::pg_catalog.text AS a, '' AS b, n.nspname::pg_catalog.text AS s, c.relname::pg_catalog.text AS n, c.relkind::pg_catalog.text AS x,
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'f' THEN 'foreign table'
            WHEN c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}'::pg_catalog."char"[]) AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w
                 WHERE w.ev_class OPERATOR(pg_catalog.=) c.oid AND w.rulename OPERATOR(pg_catalog.=) '_RETURN') THEN 'definition not found'
            ELSE '' END AS via
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f,S}'::pg_catalog."char"[]) AND n.nspname OPERATOR(pg_catalog.!~~) 'pg\_toast%'
UNION ALL
SELECT 'f', p.oid::pg_catalog.text, '', n.nspname, p.proname, p.provolatile::pg_catalog.text OPERATOR(pg_catalog.||) p.prokind::pg_catalog.text OPERATOR(pg_catalog.||)
       CASE WHEN p.prosqlbody IS NULL AND p.prolang OPERATOR(pg_catalog.<>) ALL ('{12,13}'::pg_catalog.oid[]) THEN 'o' ELSE '' END, ''
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
UNION ALL
SELECT 'u' OPERATOR(pg_catalog.||) d.kind, o.rel::pg_catalog.text, d.ref::pg_catalog.text, '', '', o.w, o.via
FROM owner o JOIN dep_to d ON d.classid OPERATOR(pg_catalog.=) o.classid AND d.objid OPERATOR(pg_catalog.=) o.objid
WHERE (d.kind OPERATOR(pg_catalog.=) 'f' AND NOT (d.ref OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring)))
   OR (d.kind OPERATOR(pg_catalog.=) 'r' AND (d.ref OPERATOR(pg_catalog.<>) o.rel OR o.w OPERATOR(pg_catalog.~~) 'l%'))
UNION ALL
SELECT 'l', o.rel::pg_catalog.text, '', '', '', pg_catalog.substr(o.w, 2), o.via FROM owner o WHERE o.w OPERATOR(pg_catalog.~~) 'l%'
UNION ALL
SELECT 'uf', a.attrelid::pg_catalog.text, 'pg_catalog.nextval(pg_catalog.regclass)'::pg_catalog.regprocedure::pg_catalog.oid::pg_catalog.text, '', '', 'w',
       'identity column ' OPERATOR(pg_catalog.||) a.attname
FROM pg_catalog.pg_attribute a WHERE a.attidentity OPERATOR(pg_catalog.<>) '' AND NOT a.attisdropped
UNION ALL
SELECT CASE WHEN e.def OPERATOR(pg_catalog.~*) '\m(current_date|current_time|current_timestamp|localtime|localtimestamp)\M'
            THEN 'ut' ELSE 'ub' END, e.rel::pg_catalog.text, '', '', '', 'r', e.via
FROM (SELECT v.oid AS rel, 'definition' AS via, pg_catalog.pg_get_viewdef(v.oid) AS def
      FROM user_views v
      UNION ALL
      SELECT p.polrelid, 'row-level security policy ' OPERATOR(pg_catalog.||) p.polname,
             coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||)
             coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
      FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
      WHERE c.relrowsecurity) e
WHERE e.def OPERATOR(pg_catalog.~*) '\m(current_date|current_time|current_timestamp|localtime|localtimestamp|session_user)\M'
UNION ALL
SELECT 't', t.tgrelid::pg_catalog.text, t.tgfoid::pg_catalog.text, '', '', t.ev, t.tgname
FROM trg t
WHERE NOT t.tgisinternal OR (t.tgparentid OPERATOR(pg_catalog.<>) 0 AND t.tgconstraint OPERATOR(pg_catalog.=) 0)
UNION ALL
SELECT 'q', t.tgrelid::pg_catalog.text, '', '', '', t.ev, coalesce(k.conname::pg_catalog.text, t.tgname::pg_catalog.text)
FROM trg t LEFT JOIN pg_catalog.pg_constraint k ON k.oid OPERATOR(pg_catalog.=) t.tgconstraint
WHERE t.tgdeferrable
UNION ALL
SELECT 'k', k.confrelid::pg_catalog.text, k.conrelid::pg_catalog.text, '', '', k.confdeltype::pg_catalog.text OPERATOR(pg_catalog.||) k.confupdtype::pg_catalog.text, k.conname
FROM pg_catalog.pg_constraint k WHERE k.contype OPERATOR(pg_catalog.=) 'f'
UNION ALL
SELECT 'c', i.inhparent::pg_catalog.text, i.inhrelid::pg_catalog.text, '', '', '', '' FROM pg_catalog.pg_inherits i
UNION ALL
SELECT 'f' OPERATOR(pg_catalog.||) d.kind, d.objid::pg_catalog.text, d.ref::pg_catalog.text, '', '', '', ''
FROM dep_to d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
  AND (d.kind OPERATOR(pg_catalog.=) 'r' OR NOT (d.ref OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring)))
UNION ALL
SELECT 'ff', p.oid::pg_catalog.text, p.prosupport::pg_catalog.oid::pg_catalog.text, '', '', '', ''
FROM pg_catalog.pg_proc p WHERE p.prosupport OPERATOR(pg_catalog.<>) 0 AND NOT (p.prosupport OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring))
UNION ALL
SELECT 'ff', a.aggfnoid::pg_catalog.text, u.f::pg_catalog.text, '', '', '', ''
FROM pg_catalog.pg_aggregate a,
     LATERAL pg_catalog.unnest(ARRAY[a.aggtransfn::pg_catalog.oid, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                          a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]) AS u(f)
WHERE u.f OPERATOR(pg_catalog.<>) 0 AND NOT (u.f OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring))
UNION ALL
SELECT 'b', p.oid::pg_catalog.text, '', CASE WHEN l.oid OPERATOR(pg_catalog.=) 14 THEN 'sql' ELSE 'plpgsql' END,
       pg_catalog.pg_get_function_arguments(p.oid), pg_catalog.pg_get_function_result(p.oid), p.prosrc
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
WHERE p.prosqlbody IS NULL
  AND p.pronamespace OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace])
  AND pg_catalog.octet_length(p.prosrc) OPERATOR(pg_catalog.<=) MAX_BODY_BYTES
  AND (l.oid OPERATOR(pg_catalog.=) 14
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc h
                  WHERE h.oid OPERATOR(pg_catalog.=) l.lanplcallfoid AND h.proname OPERATOR(pg_catalog.=) 'plpgsql_call_handler'
                    AND h.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace))
UNION ALL
SELECT DISTINCT 'o', '', '', n.nspname, o.oprname, '', ''
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
UNION ALL
SELECT 'o', u.f::pg_catalog.text, '', n.nspname, o.oprname, '', ''
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace,
     LATERAL pg_catalog.unnest(ARRAY[o.oprcode::pg_catalog.oid, o.oprrest, o.oprjoin]) AS u(f)
WHERE u.f OPERATOR(pg_catalog.<>) 0 AND (o.oid OPERATOR(pg_catalog.>=) 16384 OR u.f OPERATOR(pg_catalog.=) ANY (SELECT oid FROM vol)) AND NOT (u.f OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring))
UNION ALL
SELECT 'x', k.castfunc::pg_catalog.text, '', n.nspname, t.typname, k.castcontext::pg_catalog.text,
       k.castsource::pg_catalog.regtype::pg_catalog.text
FROM pg_catalog.pg_cast k JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) k.casttarget
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
WHERE k.castfunc OPERATOR(pg_catalog.<>) 0 AND NOT (k.castfunc OPERATOR(pg_catalog.=) ANY (SELECT oid FROM boring))
UNION ALL
SELECT 'h', v.oid::pg_catalog.text, '', '', '', '',
       'operator ' OPERATOR(pg_catalog.||) o.oprname OPERATOR(pg_catalog.||) ' of operator family ' OPERATOR(pg_catalog.||) pf.opfname OPERATOR(pg_catalog.||) ' (sorts, grouping, joins, index scans)'
FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_operator o ON o.oid OPERATOR(pg_catalog.=) a.amopopr
JOIN pg_catalog.pg_opfamily pf ON pf.oid OPERATOR(pg_catalog.=) a.amopfamily,
     LATERAL pg_catalog.unnest(ARRAY[o.oprcode::pg_catalog.oid, o.oprrest, o.oprjoin]) AS u(f)
JOIN vol v ON v.oid OPERATOR(pg_catalog.=) u.f
UNION ALL
SELECT 'h', v.oid::pg_catalog.text, '', '', '', '',
       'support function of operator family ' OPERATOR(pg_catalog.||) pf.opfname OPERATOR(pg_catalog.||) ' (sorts, grouping, joins, index scans)'
FROM vol v JOIN pg_catalog.pg_amproc a ON a.amproc OPERATOR(pg_catalog.=) v.oid JOIN pg_catalog.pg_opfamily pf ON pf.oid OPERATOR(pg_catalog.=) a.amprocfamily
WHERE v.prolang OPERATOR(pg_catalog.<>) ALL ('{12,13}'::pg_catalog.oid[])
UNION ALL
SELECT 'h', v.oid::pg_catalog.text, '', '', '', '', 'input/output function of type ' OPERATOR(pg_catalog.||) t.oid::pg_catalog.regtype::pg_catalog.text
FROM pg_catalog.pg_type t,
     LATERAL pg_catalog.unnest(ARRAY[t.typinput::pg_catalog.oid, t.typoutput, t.typreceive, t.typsend,
                                     t.typmodin, t.typmodout]) AS u(f)
JOIN vol v ON v.oid OPERATOR(pg_catalog.=) u.f
UNION ALL
SELECT 'h', d.ref::pg_catalog.text, '', '', '', 'c', 'constraint ' OPERATOR(pg_catalog.||) k.conname OPERATOR(pg_catalog.||) ' of domain ' OPERATOR(pg_catalog.||) k.contypid::pg_catalog.regtype::pg_catalog.text
FROM pg_catalog.pg_constraint k
JOIN dep_to d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) k.oid AND d.kind OPERATOR(pg_catalog.=) 'f'
WHERE k.contypid OPERATOR(pg_catalog.<>) 0
UNION ALL
SELECT 'D', '', '', '', '', '', ''
WHERE EXISTS (
  -- A deferrable trigger other than a foreign key's own checks (those
  -- write nothing: PostgreSQL defers only NO ACTION checks, never a
  -- referential action).
  SELECT 1 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
  WHERE t.tgdeferrable
    AND NOT (p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
             AND pg_catalog.starts_with(p.proname::pg_catalog.text, 'RI_FKey_')))`

// objectsFromRows turns the rows of objectsSQL into router terms.
//
// NOTE: what it cannot resolve (an OID that names no row, which one
// snapshot should not produce) is dropped from edges but makes the relation
// that uses it opaque, so the relation is presumed to write (fail safe).
func objectsFromRows(rows [][]string) (router.CatalogObjects, error) {
	var o router.CatalogObjects
	funcs := map[string]int{} // oid → index in o.Functions
	rels := map[string]int{}  // oid → index in o.Relations
	for _, r := range rows {
		if len(r) != 7 {
			return o, fmt.Errorf("catalog objects: row of %d columns, want 7", len(r))
		}
		switch r[0] {
		case "f":
			f := router.CatalogFunc{Schema: r[3], Name: r[4], Volatility: router.Volatile}
			if len(r[5]) >= 2 {
				f.Volatility, f.Kind = router.Volatility(r[5][0]), r[5][1]
				f.OpaqueBody = len(r[5]) > 2 && r[5][2] == 'o'
			}
			funcs[r[1]] = len(o.Functions)
			o.Functions = append(o.Functions, f)
		case "r":
			rel := router.CatalogRelation{Schema: r[3], Name: r[4], Opaque: r[6]}
			if r[5] != "" {
				rel.Kind = r[5][0]
			}
			rels[r[1]] = len(o.Relations)
			o.Relations = append(o.Relations, rel)
		}
	}
	fn := func(oid string) (policy.Func, bool) {
		i, ok := funcs[oid]
		if !ok {
			return policy.Func{}, false
		}
		return policy.Func{Schema: o.Functions[i].Schema, Name: o.Functions[i].Name}, true
	}
	rel := func(oid string) (*router.CatalogRelation, policy.Table, bool) {
		i, ok := rels[oid]
		if !ok {
			return nil, policy.Table{}, false
		}
		r := &o.Relations[i]
		return r, policy.Table{Schema: r.Schema, Name: r.Name}, true
	}
	opaque := func(r *router.CatalogRelation, why string) {
		if r != nil && r.Opaque == "" {
			r.Opaque = why
		}
	}
	// rule finds or adds a relation's rule by name.
	rule := func(r *router.CatalogRelation, name string) *router.CatalogRule {
		for i := range r.Rules {
			if r.Rules[i].Name == name {
				return &r.Rules[i]
			}
		}
		r.Rules = append(r.Rules, router.CatalogRule{Name: name})
		return &r.Rules[len(r.Rules)-1]
	}
	ops := map[policy.Func]int{}
	for _, r := range rows {
		switch r[0] {
		case "uf", "ur":
			owner, _, ok := rel(r[1])
			if !ok {
				continue // a relation we do not read (an index, a composite type)
			}
			var f policy.Func
			var t policy.Table
			if r[0] == "uf" {
				if f, ok = fn(r[2]); !ok {
					opaque(owner, "uses a function not in the catalog")
					continue
				}
			} else {
				if _, t, ok = rel(r[2]); !ok {
					opaque(owner, "uses a relation not in the catalog")
					continue
				}
			}
			when := r[5]
			if len(when) > 0 && when[0] == 'l' {
				ru := rule(owner, r[6])
				ru.Events |= router.ParseEvents(when[1:])
				if r[0] == "uf" {
					ru.Funcs = append(ru.Funcs, f)
				} else {
					ru.Tables = append(ru.Tables, t)
				}
				continue
			}
			u := router.CatalogUse{Via: r[6], Func: f, Table: t}
			switch when {
			case "w":
				u.When = router.UseWrite
			case "m":
				u.When = router.UseRefresh
			}
			owner.Uses = append(owner.Uses, u)
		case "ut", "ub":
			// The transaction's time, or the session user: what now() and
			// session_user() stand for in routing.
			if owner, _, ok := rel(r[1]); ok {
				f := policy.Func{Schema: "pg_catalog", Name: "now"}
				if r[0] == "ub" {
					f.Name = "session_user"
				}
				owner.Uses = append(owner.Uses, router.CatalogUse{Via: r[6], Func: f})
			}
		case "l":
			if owner, _, ok := rel(r[1]); ok {
				rule(owner, r[6]).Events |= router.ParseEvents(r[5])
			}
		case "t":
			owner, _, ok := rel(r[1])
			if !ok {
				continue
			}
			f, ok := fn(r[2])
			if !ok {
				f = policy.Func{Name: "?"}
			}
			owner.Triggers = append(owner.Triggers, router.CatalogTrigger{Name: r[6], Events: router.ParseEvents(r[5]), Func: f})
		case "k":
			referenced, _, ok1 := rel(r[1])
			_, referencing, ok2 := rel(r[2])
			if !ok1 {
				continue
			}
			if !ok2 || len(r[5]) != 2 {
				opaque(referenced, "a foreign key references it from outside the catalog")
				continue
			}
			referenced.Referenced = append(referenced.Referenced, router.CatalogForeignKey{
				Name: r[6], Table: referencing, OnDelete: r[5][0], OnUpdate: r[5][1]})
		case "c":
			parent, _, ok1 := rel(r[1])
			_, child, ok2 := rel(r[2])
			if !ok1 {
				continue
			}
			if !ok2 {
				opaque(parent, "a child is not in the catalog")
				continue
			}
			parent.Children = append(parent.Children, child)
		case "ff", "fr":
			i, ok := funcs[r[1]]
			if !ok {
				continue
			}
			caller := &o.Functions[i]
			if r[0] == "ff" {
				f, ok := fn(r[2])
				if !ok {
					// What it calls is unknown: presume the worst.
					caller.Volatility = router.Volatile
					continue
				}
				caller.Calls = append(caller.Calls, f)
			} else {
				_, t, ok := rel(r[2])
				if !ok {
					continue // a composite type or an index
				}
				caller.Reads = append(caller.Reads, t)
			}
		case "b":
			i, ok := funcs[r[1]]
			if !ok {
				continue
			}
			body, err := router.ReadFunctionBody(r[3], r[4], r[5], r[6])
			if err != nil {
				continue // it stays opaque (fail safe)
			}
			f := &o.Functions[i]
			f.OpaqueBody = false
			f.Calls = append(f.Calls, body.Calls...)
			f.Reads = append(f.Reads, body.Reads...)
			f.Operators, f.Casts, f.Attrs = body.Operators, body.Casts, body.Attrs
		case "o":
			k := policy.Func{Schema: r[3], Name: r[4]}
			i, ok := ops[k]
			if !ok {
				i = len(o.Operators)
				ops[k] = i
				o.Operators = append(o.Operators, router.CatalogOperator{Schema: r[3], Name: r[4]})
			}
			if r[1] == "" {
				continue
			}
			f, ok := fn(r[1])
			if !ok {
				f = policy.Func{Schema: r[3], Name: "operator " + r[4]} // unknown: presumed to write
			}
			o.Operators[i].Funcs = append(o.Operators[i].Funcs, f)
		case "x":
			f, ok := fn(r[1])
			if !ok || r[5] == "" {
				continue
			}
			o.Casts = append(o.Casts, router.CatalogCast{TargetSchema: r[3], Target: r[4], Source: r[6], Context: r[5][0], Func: f})
		case "h":
			f, ok := fn(r[1])
			if !ok {
				continue
			}
			o.Hazards = append(o.Hazards, router.CatalogHazard{What: r[6], Func: f, Check: r[5] == "c"})
		case "q":
			// A write with these events may queue a deferred check.
			if owner, _, ok := rel(r[1]); ok {
				owner.Deferrable = append(owner.Deferrable, router.CatalogDeferrable{Name: r[6], Events: router.ParseEvents(r[5])})
			}
		case "D":
			o.DeferrableTriggers = true
		}
	}
	return o, nil
}

// quoteLiteral writes s as an SQL string constant (standard_conforming_strings
// on, as the catalog read's other patterns assume).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
