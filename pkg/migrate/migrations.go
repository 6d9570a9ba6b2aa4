package migrate

import (
	"fmt"
	"slices"
	"strings"
)

// Migration is one named data migration, described as data; the engine generates its batch,
// undo and report SQL from this description.
type Migration struct {
	// Name is what config.Migrations, debconf and `emrkit migrate` call it.
	Name string
	// Summary says in one line what it does.
	Summary string
	// Table and Key: the table it rewrites and that table's integer primary key.
	Table, Key string
	// Columns are the columns it writes, each with the SQL expression of its new value in
	// terms of the row's current columns (unqualified, backquoted names).
	Columns []Column
	// Reads lists every other column the expressions read; preflight checks they exist.
	Reads []string
	// Where restricts the rows considered ("" = all). Rows whose new values equal the old
	// ones are never written nor recorded, whatever Where says.
	Where string
	// Notes are counted over the whole table and reported. They are counted while the
	// batches run, so a note's condition must hold for a row before the migration exactly
	// when it holds after.
	Notes []Note
	// Seed is the SQL the migration replaces (OSCAR's documented upgrade statements), kept
	// for the tests and benchmarks that compare against it.
	Seed []string
}

// Column is a column a migration writes and the SQL expression of its new value.
type Column struct{ Name, New string }

// Note is a count reported after a migration: rows matching Where, told with Say (one %s
// for the count).
type Note struct{ Where, Say string }

// UndoTable is the emrkit-owned table holding m's undo data.
func (m Migration) UndoTable() string {
	return "emrkit_undo_" + strings.ReplaceAll(m.Name, "-", "_")
}

// Kind is the journal kind of m's entries.
func (m Migration) Kind() string { return KindPrefix + m.Name }

// Since is the release that introduced the data migrations; the plan's catalogue item and
// `emrkit migrate up` must journal the same value.
const Since = "0.4.0"

// KindPrefix starts the journal kind of every migration.
const KindPrefix = "migrate."

// ProgressTable holds each migration's progress and report (see the package doc).
const ProgressTable = "emrkit_migrations"

// The middle-names expressions. t is first_name trimmed of leading and trailing blanks (TRIM
// removes spaces only, as in the seed); a row is split when middleNames is NULL or empty
// (blank counts as empty: the seed's `middleNames = ”` is true for ' ' in OSCAR's PAD SPACE
// collations) and t holds a space.
const (
	trimmed = "TRIM(`first_name`)"
	split   = "((`middleNames` IS NULL OR `middleNames` = '') AND LOCATE(' ', " + trimmed + ") > 0)"
)

// catalogue lists every migration emrkit knows (config.KnownMigrations).
var catalogue = []Migration{
	{
		Name: "middle-names",
		Summary: "trim first_name; move the words after the first into an empty middleNames, " +
			"single-spaced; never drop a word",
		Table: "demographic", Key: "demographic_no",
		Columns: []Column{
			{"first_name", "IF(" + split + ", SUBSTRING_INDEX(" + trimmed + ", ' ', 1), " + trimmed + ")"},
			{"middleNames", "IF(" + split + ", TRIM(REGEXP_REPLACE(SUBSTRING(" + trimmed + ", LOCATE(' ', " + trimmed +
				") + 1), ' +', ' ')), `middleNames`)"},
		},
		// Only rows with a blank somewhere can change; the LIKE lets the batch skip the rest
		// without computing anything.
		Where: "`first_name` LIKE '% %'",
		Notes: []Note{{
			Where: "NOT (`middleNames` IS NULL OR `middleNames` = '') AND LOCATE(' ', " + trimmed + ") > 0",
			Say: "left %s rows' first_name whole: it has several words but middleNames is already set " +
				"(OSCAR's upgrade SQL would have dropped the extra words)",
		}},
		Seed: []string{
			"UPDATE demographic SET first_name = TRIM(first_name)",
			"UPDATE demographic SET middleNames = SUBSTRING(first_name, LOCATE(' ', first_name) + 1) WHERE (middleNames IS NULL OR middleNames = '') AND LOCATE(' ', first_name) > 0",
			"UPDATE demographic SET first_name = SUBSTRING_INDEX(first_name, ' ', 1)",
		},
	},
	{
		Name:    "roster-enrolled-to",
		Summary: "set roster_enrolled_to to the MRP (provider_no) of rostered patients (roster_status RO) that have none",
		Table:   "demographic", Key: "demographic_no",
		Columns: []Column{{"roster_enrolled_to", "`provider_no`"}},
		Reads:   []string{"provider_no", "roster_status"},
		Where:   "`roster_status` = 'RO' AND (`roster_enrolled_to` IS NULL OR `roster_enrolled_to` = '')",
		Notes: []Note{{
			Where: "`roster_status` = 'RO' AND (`roster_enrolled_to` IS NULL OR `roster_enrolled_to` = '') AND (`provider_no` IS NULL OR `provider_no` = '')",
			Say:   "%s rostered patients have no MRP (provider_no is empty), so no roster_enrolled_to either: set their MRP in OSCAR",
		}},
		Seed: []string{
			"UPDATE demographic SET roster_enrolled_to = provider_no WHERE roster_status = 'RO' AND (roster_enrolled_to IS NULL OR roster_enrolled_to = '')",
		},
	},
}

// All returns every migration, in catalogue order.
func All() []Migration { return slices.Clone(catalogue) }

// Names returns every migration's name.
func Names() []string {
	var out []string
	for _, m := range catalogue {
		out = append(out, m.Name)
	}
	return out
}

// ErrUnknown is wrapped by Lookup's error for a name no migration has.
var ErrUnknown = fmt.Errorf("unknown migration")

// Lookup returns the migration called name.
func Lookup(name string) (Migration, error) {
	for _, m := range catalogue {
		if m.Name == name {
			return m, nil
		}
	}
	return Migration{}, fmt.Errorf("%w %q; known: %s", ErrUnknown, name, strings.Join(Names(), ", "))
}

// byKind returns the migration whose journal kind is kind.
func byKind(kind string) (Migration, bool) {
	for _, m := range catalogue {
		if m.Kind() == kind {
			return m, true
		}
	}
	return Migration{}, false
}
