package migrate

import (
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/mariadb"
)

// q backquotes a name already checked by validate (catalogue constants and the journaled
// undo table name, which Undo validates before use).
func q(name string) string { return "`" + name + "`" }

// validate checks every identifier m splices into SQL.
func (m Migration) validate() error {
	names := []string{m.Table, m.Key, m.UndoTable()}
	for _, c := range m.Columns {
		names = append(names, c.Name)
	}
	names = append(names, m.Reads...)
	for _, n := range names {
		if err := mariadb.ValidIdentifier(n); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// same is the SQL condition "a and b hold the same bytes, or are both NULL". Plain = ignores
// trailing blanks in PAD SPACE collations; BINARY compares the bytes.
func same(a, b string) string { return "BINARY " + a + " <=> BINARY " + b }

// sqlCreateUndo creates the undo table with the migrated columns' own types: key, old_*, new_*.
func (m Migration) sqlCreateUndo(undo string) string {
	cols := []string{q(m.Key)}
	for _, c := range m.Columns {
		cols = append(cols, q(c.Name)+" AS "+q("old_"+c.Name))
	}
	for _, c := range m.Columns {
		cols = append(cols, q(c.Name)+" AS "+q("new_"+c.Name))
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (PRIMARY KEY (%s)) ENGINE=InnoDB"+
		" COMMENT='emrkit: undo data of migration %s; `emrkit migrate down %s` restores and drops it'"+
		" SELECT %s FROM %s WHERE 1 = 0",
		q(undo), q(m.Key), m.Name, m.Name, strings.Join(cols, ", "), q(m.Table))
}

// sqlRecord inserts, for the rows of (lo, hi] the migration changes, their old and new values.
// Each new value is computed in the WHERE (which stops at the first column that differs) and
// again in the SELECT list: MariaDB merges a derived table that would compute it once back
// into this very statement (EXPLAIN EXTENDED shows it).
func (m Migration) sqlRecord(undo string) string {
	ins, sel := []string{q(m.Key)}, []string{q(m.Key)}
	for _, c := range m.Columns {
		ins = append(ins, q("old_"+c.Name))
		sel = append(sel, q(c.Name))
	}
	for _, c := range m.Columns {
		ins = append(ins, q("new_"+c.Name))
		sel = append(sel, c.New)
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s > ? AND %s <= ? AND %s",
		q(undo), strings.Join(ins, ", "), strings.Join(sel, ", "), q(m.Table), q(m.Key), q(m.Key), m.changes())
}

// sqlApply writes the recorded new values of (lo, hi] where every column still holds the
// recorded old one.
func (m Migration) sqlApply(undo string) string {
	return m.swap(undo, "old_", "new_")
}

// sqlRestore puts back the old values of (lo, hi] where every column still holds the new one.
func (m Migration) sqlRestore(undo string) string {
	return m.swap(undo, "new_", "old_")
}

// swap is compare-and-swap over the undo rows of (lo, hi]: where every migrated column holds
// the recorded from* value, write the to* values.
func (m Migration) swap(undo, from, to string) string {
	var set, holds []string
	for _, c := range m.Columns {
		set = append(set, "d."+q(c.Name)+" = u."+q(to+c.Name))
		holds = append(holds, same("d."+q(c.Name), "u."+q(from+c.Name)))
	}
	return fmt.Sprintf("UPDATE %s AS d JOIN %s AS u ON d.%s = u.%s SET %s WHERE u.%s > ? AND u.%s <= ? AND %s",
		q(m.Table), q(undo), q(m.Key), q(m.Key), strings.Join(set, ", "), q(m.Key), q(m.Key), strings.Join(holds, " AND "))
}

// sqlKept lists the keys of (lo, hi] whose row holds neither the old values (restored, or
// never changed) — edited since, or deleted.
func (m Migration) sqlKept(undo string) string {
	var old []string
	for _, c := range m.Columns {
		old = append(old, same("d."+q(c.Name), "u."+q("old_"+c.Name)))
	}
	return fmt.Sprintf("SELECT u.%s FROM %s AS u LEFT JOIN %s AS d ON d.%s = u.%s WHERE u.%s > ? AND u.%s <= ? AND NOT (d.%s IS NOT NULL AND %s) ORDER BY u.%s",
		q(m.Key), q(undo), q(m.Table), q(m.Key), q(m.Key), q(m.Key), q(m.Key), q(m.Key), strings.Join(old, " AND "), q(m.Key))
}

// sqlPreview counts, in one scan, the rows up would change.
func (m Migration) sqlPreview() string {
	return "SELECT COALESCE(SUM(" + m.changes() + "), 0) FROM " + q(m.Table)
}

// changes is the SQL condition "up changes this row": it meets m.Where and some column's
// new value differs from its value, byte for byte.
func (m Migration) changes() string {
	var unchanged []string
	for _, c := range m.Columns {
		unchanged = append(unchanged, same(c.New, q(c.Name)))
	}
	cond := "NOT (" + strings.Join(unchanged, " AND ") + ")"
	if m.Where != "" {
		cond = "(" + m.Where + ") AND " + cond
	}
	return cond
}

// sqlNotes counts each note's rows in one scan.
func (m Migration) sqlNotes() string {
	if len(m.Notes) == 0 {
		return ""
	}
	var sums []string
	for _, n := range m.Notes {
		sums = append(sums, "COALESCE(SUM("+n.Where+"), 0)")
	}
	return "SELECT " + strings.Join(sums, ", ") + " FROM " + q(m.Table)
}
