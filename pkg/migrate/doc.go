// Package migrate owns OSCAR's 15 -> 19 data migrations (design section 8): reversible,
// resumable, set-based rewrites of rows in the clinic's own tables, journaled like every other
// emrkit change.
//
// # Migrations as data
//
// A Migration is a row in a catalogue (like goose keeps schema migrations as data): the
// table and primary key it works on, each column it writes with the SQL expression of the
// column's new value, the condition a row must meet, and the counts it reports afterwards.
// The batch SQL is generated from that description, so every migration gets the same undo,
// resume and compare-and-swap machinery. pressly/goose does not fit: it versions schema
// scripts, and has no notion of per-row undo data or of restoring only rows nobody touched.
//
// # Undo data lives in the database, not the journal
//
// The journal records one entry per migration (kind "migrate.<name>", target
// "<database>.demographic") whose Desired names the undo table. The per-row undo data — a
// million rows' old values do not belong in a JSON file rewritten on every journal update —
// goes to an emrkit-owned table in the same database:
//
//	emrkit_undo_middle_names (demographic_no PK, old_first_name, old_middleNames,
//	                          new_first_name, new_middleNames)
//
// created with CREATE TABLE ... SELECT from the migrated columns, so its columns have exactly
// the types, character sets and collations of the originals. A second table,
// emrkit_migrations ((name, segment) PK, state, last_key, high_key, counts, backup file),
// holds each migration's progress in its segment-0 row, and while up runs one row per worker
// segment; it is dropped with its last row.
//
// # A batch
//
// Up splits the primary key range, up to high_key (the last key when it started: patients
// OSCAR 19 registers while it runs were typed the new way — "Mary Ann" may be a first name —
// and are not touched), into Workers contiguous segments (DefaultWorkers, 2), each walked by a
// connection of its own and recorded in its own progress row (walk.go; down walks the undo
// table's keys the same way). A segment is walked in batches of BatchSize rows (the upper key
// of each batch is found with a LIMIT/OFFSET probe on the primary key, so gaps in the key
// cost nothing). Each batch is one short transaction:
//
//	INSERT INTO undo SELECT key, old values, new values FROM demographic
//	       WHERE key IN (lo, hi] AND <condition> AND <new differs from old, byte for byte>;
//	UPDATE demographic JOIN undo USING (key) SET columns = new values
//	       WHERE key IN (lo, hi] AND every column still holds, byte for byte, the old value;
//	UPDATE emrkit_migrations SET last_key = hi, changed = changed + n WHERE <this segment>;
//	COMMIT
//
// The connections run READ COMMITTED, so the INSERT ... SELECT is a plain read that locks
// nothing of OSCAR's table, and the UPDATE writes a row only where it still holds the
// recorded old values (UPDATE reads the last committed row under its lock). When it wrote
// fewer rows than were recorded, OSCAR changed one in between: the batch rolls back and runs
// again, so what is recorded is exactly what is written and an edit is never overwritten.
// (REPEATABLE READ would hold shared locks on every row of the batch instead; measured, it
// cost about 15% more server CPU. A server that logs statements, binlog_format=STATEMENT,
// refuses READ COMMITTED writes and keeps REPEATABLE READ; the swap is correct under both.)
// Only rows whose value actually changes are recorded (compared as BINARY: OSCAR's PAD SPACE
// collations consider 'Mary ' and 'Mary' equal, which would hide a trim). A batch commits
// whole or not at all, so a crash (or kill -9) never leaves a changed row without its undo
// record, and the re-run continues each segment after its last_key: the final table is the
// one an uninterrupted run makes. When one segment fails, the others stop after their current
// batch. The segments' rows fold into the migration's row, in one transaction, when the last
// one is done. Locks last one batch. Deadlocks and lock-wait timeouts against OSCAR's own
// writes retry the batch.
//
// The session runs in strict SQL mode: a value that does not fit its column is an error
// naming the batch, never a silent truncation (OSCAR installs often run with an empty sql_mode).
//
// # Down is compare-and-swap
//
// Down (the journal undoer: `migrate down`, revert, downgrade, purge, or a migration dropped
// from config.Migrations) first calls the backup function on the undo table and the progress
// table, then walks the undo table's keys in segments and batches, as up walks the table:
//
//	UPDATE demographic JOIN undo USING (key) SET columns = old values
//	       WHERE key IN (lo, hi] AND every column still holds, byte for byte, the new value;
//
// A row edited since the migration (any of its migrated columns) is kept as it is and
// counted, with a sample of its keys in the report; rows that hold the old values already
// count as neither. Progress (state "undoing"; each segment's last_key, counts and sample) is
// committed with each batch, so an interrupted down resumes too; one an earlier release
// interrupted (its progress in the migration's row alone) resumes after its last_key as one
// segment. The undo table is dropped last.
//
// Why the undo table is the whole backup down needs: down writes nothing but the migrated
// columns of the rows the undo table lists, and only the values recorded as old, where the
// row holds the values recorded as new. Every write of down is therefore reversed by the
// same table (UPDATE t JOIN undo SET columns = new WHERE columns hold old), and no other
// column or row is touched. A dump of the whole table would add the patients' other columns
// (most of its size, about 9 s per million rows) without adding anything down can lose. The
// whole-database backup that `dpkg` downgrades and purges take first is kept as it was.
//
// # Cost
//
// BenchmarkVersusSeed (a million fixture rows, `make bench`) times each migration against
// the seed's raw SQL run with the mariadb client on an identical copy, in one run on one
// server, and against the floor: the migration's own writes cut into the same batches on
// the same connections with nothing recorded. Measured on 2 shared cores (2026-12-03, one
// run of three rounds, ratios of the summed times; the README has the table and two more
// runs): middle-names up 0.46x the seed's three UPDATEs (one scan instead of three; floor
// 0.46x), down with its backup 0.53x; roster-enrolled-to up 1.01x the seed's single UPDATE
// (floor 0.74x), down with its backup 0.54x. The seed's roster UPDATE is one pass that
// rewrites a third of the rows; the same writes batched on two cores (per-batch probe,
// commit and progress row, two writers contending on two cores) are the floor, and
// recording the undo rows adds a quarter to a third to it. Tried and rejected: a per-batch JSON blob of undo data instead
// of a row per change (8% faster, not worth losing a typed, inspectable undo table), a
// single-table UPDATE or STRAIGHT_JOIN for the write (within noise, and the write must compare
// with the recorded values), three workers and 25,000- or 50,000-row batches (within noise,
// longer locks), and taking down's backup while the batches run (it would save its 0.16 s,
// but a failed backup would then leave the migration half undone instead of untouched). A
// single round's ratio moves by 20% or more between rounds here, so ratios are only taken
// within one run, summed over rounds.
//
// # Who owns a migration
//
// Steps builds one journaled step per migration named in config.Migrations (debconf
// emrkit/migrations), which `emrkit apply` and postinst run; removing a name from the list
// makes the next apply undo it, like any step no longer planned. `emrkit migrate up NAME` run
// by hand journals with origin "command": the admin's choice, which apply leaves alone; only
// `migrate down`, revert, a downgrade below the release that introduced it, and purge undo
// it. A migration the plan already ran keeps its plan origin when the admin runs up again.
// A migration is one-shot: once done, Check is satisfied by its progress row, so rows OSCAR
// writes later are never rewritten by a later apply.
package migrate
