package backup

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/semaphore"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/emrkit/emrkit/pkg/redact"
)

// A dump is loaded over several connections at once, the way myloader loads its files, and
// the result is the one `mariadb DB < dump` gives, table for table:
//
//   - Every statement runs in dump order on one connection (the coordinator) but the rows:
//     a table's INSERTs go to the workers, each a connection of its own, as they come.
//     Before any other statement (CREATE TABLE, ALTER TABLE ... ENABLE KEYS, a trigger, a
//     view) every worker commits what it was given, so that statement finds the table as a
//     serial load would have left it.
//   - There is one worker more than CPUs (at most 8). Rows of a table with a primary key go
//     to whichever worker is next: InnoDB keeps them in key order, whatever order they
//     arrive in. Rows of a table without one keep their order (it is the order a dump of
//     the copy lists them in): all go to the same worker. The first statement of a table's
//     rows commits before the next is handed on (see insert).
//   - An InnoDB table's plain secondary keys are added once its rows are in (deferKeys).
//   - SET statements (character set, time zone, FOREIGN_KEY_CHECKS=0, SQL_MODE) run on
//     every connection, where they stand in the dump.
//   - LOCK TABLES and UNLOCK TABLES are left out: a lock taken by one connection would make
//     the others wait for it, and they change nothing in what is loaded.
//   - A worker commits every loadCommitBytes of rows, or when it has nothing queued (an idle
//     worker must hold no lock another may wait for), rather than after every statement.
//   - The statements waiting for a worker hold at most loadBudget bytes (or one statement of
//     up to max_allowed_packet), so memory stays bounded whatever the dump's size.
//
// The first statement that fails stops the load; its error names its line and table, its
// values withheld (a *LoadError).
const (
	loadCommitBytes = 32 << 20
	loadBudget      = 64 << 20
	maxLoadWorkers  = 8
)

// loadWorkers is how many connections load rows: one more than the CPUs, so that one
// statement travels while the others run (measured on 2 CPUs: 3 workers 8% faster than 2).
func loadWorkers() int { return min(runtime.NumCPU()+1, maxLoadWorkers) }

// erEmptyQuery is the server's answer to a statement that holds only comments, such as
// mariadb-dump's first line, which the mariadb client reads as its own command.
const erEmptyQuery = 1065

type loader struct {
	// ctx ends with the first failure, its cause the failure.
	ctx     context.Context
	fail    context.CancelCauseFunc
	pool    *sql.DB
	coord   *sql.Conn
	workers []*loadWorker
	done    sync.WaitGroup
	budget  *semaphore.Weighted
	size    int64 // the budget's size
	next    int
	// keyed says, per table, whether its rows may load in any order.
	keyed    map[string]bool
	version  int // the server's, for versioned comments
	deferred *deferredKeys
	meter    *progress.Meter // nil: no progress shown
	admit    func() error    // nil once asked (see loadJob)
}

type loadWorker struct {
	in   chan loadTask
	conn *sql.Conn
	// open is how many bytes of rows the worker's transaction holds, first the statement
	// they start with.
	open  int64
	first Statement
}

// loadTask is a statement for a worker, or, with ack set, a request to commit and answer.
type loadTask struct {
	stmt Statement
	all  bool // a SET every connection runs: outside the budget
	ack  chan struct{}
}

// loadJob says what loadDump loads where.
type loadJob struct {
	server config.Database // reaches the server; its Name is not used
	target string          // the database loaded into
	file   string
	keys   openpgp.EntityList
	limit  int64 // the server's max_allowed_packet
	// digests: the scanner keeps per-table digests (a restore test compares them).
	digests bool
	meter   *progress.Meter // counts the bytes of SQL handed on; nil: none
	// admit, when set, is asked before the first statement the server would run (past
	// mariadb-dump's header, which names the database), with the scanner so far; its error
	// stops the load before anything is loaded.
	admit func(*Scanner) error
}

// loadDump loads the dump j.file holds into database j.target over several connections,
// scanning every statement on the way, and returns the scanner that read it (with
// j.digests, its per-table digests) and how many bytes of SQL it read.
func loadDump(ctx context.Context, j loadJob) (*Scanner, int64, error) {
	r, err := OpenSQL(j.file, j.keys)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	into := j.server
	into.Name = j.target
	n := loadWorkers()
	pool, err := mariadb.Open(ctx, into, mariadb.MaxPacket(j.limit))
	if err != nil {
		return nil, 0, err
	}
	defer pool.Close()
	pool.SetMaxOpenConns(n + 1)
	pool.SetMaxIdleConns(n + 1)
	lctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	l := &loader{ctx: lctx, fail: fail, pool: pool, keyed: map[string]bool{}, size: max(loadBudget, j.limit), meter: j.meter}
	l.budget = semaphore.NewWeighted(l.size)
	sc := NewScanner(j.limit)
	sc.emit, sc.noDigests = l.dispatch, !j.digests
	if j.admit != nil {
		l.admit = func() error { return j.admit(sc) }
	}
	var size int64
	if err = l.start(n); err == nil {
		// The stream reads on under ctx: a failed statement reaches it as the scanner's error.
		if size, err = stream(ctx, j.file, r, sc); err == nil {
			err = l.finish()
		}
	}
	l.stop()
	if ctx.Err() != nil {
		return sc, size, ErrInterrupted
	}
	if cause := context.Cause(lctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the statement that failed, rather than the stop it caused
	}
	return sc, size, err
}

func (l *loader) start(n int) error {
	var err error
	if l.coord, err = l.pool.Conn(l.ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if l.version, err = serverVersion(l.ctx, l.coord); err != nil {
		return err
	}
	for range n {
		conn, err := l.pool.Conn(l.ctx)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if _, err := conn.ExecContext(l.ctx, "SET autocommit = 0"); err != nil {
			conn.Close()
			return fmt.Errorf("connect: %w", err)
		}
		w := &loadWorker{in: make(chan loadTask, 16), conn: conn}
		l.workers = append(l.workers, w)
		l.done.Go(func() {
			if err := l.work(w); err != nil {
				l.fail(err)
			}
		})
	}
	return nil
}

// stop ends the workers and closes the connections.
func (l *loader) stop() {
	for _, w := range l.workers {
		close(w.in)
	}
	l.done.Wait()
	for _, w := range l.workers {
		w.conn.Close()
	}
	if l.coord != nil {
		l.coord.Close()
	}
}

// work runs a worker's statements in order until its queue closes. After a failure (its own
// or another's) it only drains the queue, so that the dispatcher never waits on it.
func (l *loader) work(w *loadWorker) error {
	var failed error
	for t := range w.in {
		switch {
		case failed != nil || l.ctx.Err() != nil:
		case t.ack != nil:
			failed = w.commit(l.ctx)
		default:
			failed = l.exec(w.conn, t.stmt)
			if !t.all {
				if w.open == 0 {
					w.first = Statement{Line: t.stmt.Line, Table: t.stmt.Table}
				}
				w.open += int64(len(t.stmt.Text))
				// An idle worker holds no locks: another worker's rows may be waiting for them.
				if failed == nil && (w.open >= loadCommitBytes || len(w.in) == 0) {
					failed = w.commit(l.ctx)
				}
			}
		}
		if failed != nil {
			l.fail(failed)
		}
		if t.ack != nil {
			close(t.ack)
		} else if !t.all {
			l.budget.Release(l.weight(t.stmt))
		}
	}
	if failed == nil {
		failed = w.commit(l.ctx)
	}
	return failed
}

func (w *loadWorker) commit(ctx context.Context) error {
	if w.open == 0 {
		return nil
	}
	w.open = 0
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		e := statementError(err, w.first)
		e.Message += " (at the commit of the rows loaded from that statement on)"
		return e
	}
	return nil
}

// weight is what s holds of the budget: its buffer, which may be larger than its text.
func (l *loader) weight(s Statement) int64 { return min(int64(cap(s.Text)), l.size) }

// dispatch takes the scanner's next statement.
func (l *loader) dispatch(s Statement) error {
	if err := l.ctx.Err(); err != nil {
		return context.Cause(l.ctx)
	}
	if l.meter != nil {
		l.meter.Add(int64(len(s.Text)))
	}
	verb := statementVerb(s.Text, l.version)
	if verb != "" {
		if err := l.admitted(); err != nil {
			return err
		}
	}
	switch verb {
	case "INSERT INTO":
		return l.insert(s)
	case "LOCK TABLES", "UNLOCK TABLES":
		return nil
	case "SET":
		if err := l.exec(l.coord, s); err != nil {
			return err
		}
		for _, w := range l.workers {
			if !l.send(w, loadTask{stmt: s, all: true}) {
				return context.Cause(l.ctx)
			}
		}
		return nil
	}
	if err := l.barrier(); err != nil {
		return err
	}
	if d := l.deferred; d != nil && (d.rows || s.Table != d.table) {
		if err := l.addKeys(); err != nil {
			return err
		}
	}
	if verb == "CREATE TABLE" {
		if d, ok := deferKeys(s); ok {
			l.deferred = d
			s.Text = d.create
		}
	}
	return l.exec(l.coord, s)
}

// admitted asks admit, once (see loadJob).
func (l *loader) admitted() error {
	admit := l.admit
	if admit == nil {
		return nil
	}
	l.admit = nil
	return admit()
}

// finish waits for every row and adds the keys still deferred.
func (l *loader) finish() error {
	if err := l.admitted(); err != nil {
		return err
	}
	if err := l.barrier(); err != nil {
		return err
	}
	return l.addKeys()
}

// deferredKeys are the secondary keys left out of a table's CREATE TABLE, added in one ALTER
// TABLE once its rows are in: InnoDB then builds each key by sorting, rather than row by row
// as they arrive, which is how myloader's --innodb-optimize-keys loads too.
type deferredKeys struct {
	table  string
	create []byte // the CREATE TABLE without them
	alter  string
	from   Statement // the CREATE TABLE as the dump has it, for errors
	rows   bool      // rows of the table have been handed on
}

func (l *loader) addKeys() error {
	d := l.deferred
	if d == nil {
		return nil
	}
	l.deferred = nil
	return l.exec(l.coord, Statement{Text: []byte(d.alter), Line: d.from.Line, Table: d.from.Table})
}

// deferKeys takes the plain (not UNIQUE, FULLTEXT or SPATIAL) keys out of an InnoDB table's
// CREATE TABLE as mariadb-dump writes it, one definition a line. A table with a foreign key
// or any constraint keeps its keys: InnoDB would make an index of its own for a foreign key
// whose key is missing, and the table would come back with one index more.
func deferKeys(s Statement) (*deferredKeys, bool) {
	table, ok := quotedName(s.Text, createTable)
	text := string(s.Text)
	if !ok || !strings.Contains(text, "\n) ENGINE=InnoDB") || strings.Contains(text, "\n  CONSTRAINT ") || strings.Contains(text, " FOREIGN KEY ") {
		return nil, false
	}
	lines := strings.Split(text, "\n")
	end := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, ") ENGINE=") })
	var kept, keys []string
	for i, l := range lines {
		if i > 0 && i < end && strings.HasPrefix(l, "  KEY `") {
			keys = append(keys, "ADD "+strings.TrimSuffix(strings.TrimSpace(l), ","))
			continue
		}
		if i == end && len(keys) > 0 {
			kept[len(kept)-1] = strings.TrimSuffix(kept[len(kept)-1], ",")
		}
		kept = append(kept, l)
	}
	if len(keys) == 0 {
		return nil, false
	}
	alter := "ALTER TABLE `" + strings.ReplaceAll(table, "`", "``") + "` " + strings.Join(keys, ", ")
	return &deferredKeys{table: table, create: []byte(strings.Join(kept, "\n")), alter: alter, from: s}, true
}

// insert hands rows to a worker: any worker for a table with a primary key, else always the
// same one, so that they keep their order.
func (l *loader) insert(s Statement) error {
	table, ok := insertTable(s.Text)
	if !ok {
		// Not mariadb-dump's form: run it where a serial load would.
		if err := l.barrier(); err != nil {
			return err
		}
		return l.exec(l.coord, s)
	}
	if d := l.deferred; d != nil && d.table == table {
		d.rows = true
	}
	keyed, known := l.keyed[table]
	if !known {
		var err error
		if keyed, err = l.hasPrimaryKey(table); err != nil {
			return err
		}
		l.keyed[table] = keyed
	}
	var w *loadWorker
	if keyed {
		w = l.workers[l.next%len(l.workers)]
		l.next++
	} else {
		h := fnv.New32a()
		h.Write([]byte(table))
		w = l.workers[h.Sum32()%uint32(len(l.workers))]
	}
	if err := l.budget.Acquire(l.ctx, l.weight(s)); err != nil {
		return context.Cause(l.ctx)
	}
	if !l.send(w, loadTask{stmt: s}) {
		l.budget.Release(l.weight(s))
		return context.Cause(l.ctx)
	}
	if !known {
		// Rows into an empty table lock the whole table until they commit (MariaDB's bulk
		// insert, under the UNIQUE_CHECKS=0 and FOREIGN_KEY_CHECKS=0 dumps set): the first
		// statement of a table's rows commits before the next is handed on.
		return l.barrier()
	}
	return nil
}

func (l *loader) send(w *loadWorker, t loadTask) bool {
	select {
	case w.in <- t:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// barrier waits until every worker has run and committed what it was given.
func (l *loader) barrier() error {
	acks := make([]chan struct{}, len(l.workers))
	for i, w := range l.workers {
		acks[i] = make(chan struct{})
		if !l.send(w, loadTask{ack: acks[i]}) {
			return context.Cause(l.ctx)
		}
	}
	for _, a := range acks {
		select {
		case <-a:
		case <-l.ctx.Done():
			return context.Cause(l.ctx)
		}
	}
	return context.Cause(l.ctx)
}

func (l *loader) hasPrimaryKey(table string) (bool, error) {
	var n int
	err := l.coord.QueryRowContext(l.ctx, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'", table).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read the keys of table %s: %w", table, err)
	}
	return n > 0, nil
}

// exec runs one statement of the dump, answering a failure with a *LoadError.
func (l *loader) exec(conn *sql.Conn, s Statement) error {
	_, err := conn.ExecContext(l.ctx, string(s.Text))
	var my *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &my) && my.Number == erEmptyQuery:
		return nil
	case l.ctx.Err() != nil:
		return context.Cause(l.ctx)
	}
	return statementError(err, s)
}

// statementError places err, from the server, at the statement's line and table, and
// withholds the values it quotes.
func statementError(err error, s Statement) *LoadError {
	e := &LoadError{Line: s.Line, Table: s.Table}
	var my *mysql.MySQLError
	if !errors.As(err, &my) {
		e.Message = redact.SQLText(err.Error())
		return e
	}
	e.Message = "ERROR " + strconv.Itoa(int(my.Number))
	if my.SQLState != [5]byte{} {
		e.Message += " (" + string(my.SQLState[:]) + ")"
	}
	e.Message += ": " + redact.SQLText(my.Message)
	if in := atLine.FindStringSubmatch(my.Message); in != nil {
		if n, err := strconv.ParseInt(in[1], 10, 64); err == nil && n > 1 {
			e.At = s.Line + n - 1
		}
	}
	return e
}

// atLine is where in a statement the server says it failed: "... near '...' at line 3".
var atLine = regexp.MustCompile(` at line (\d+)$`)

// statementVerb is the first two words of what the server runs of text, upper case: past
// blanks, comments, versioned comments newer than the server (version, as 101119 for
// 10.11.19), which it reads as comments (mariadb-dump's first line, "/*M!999999\- enable the
// sandbox mode */"), and the opener of one it runs ("/*!40101 SET NAMES ...").
func statementVerb(text []byte, version int) string {
	var words []string
	for len(text) > 0 && len(words) < 2 {
		switch {
		case text[0] == ' ' || text[0] == '\t' || text[0] == '\r' || text[0] == '\n':
			text = text[1:]
		case text[0] == '#' || bytes.HasPrefix(text, []byte("--")) && (len(text) == 2 || bytes.IndexByte([]byte(" \t\r\n"), text[2]) >= 0):
			_, text, _ = bytes.Cut(text, []byte("\n"))
		case bytes.HasPrefix(text, []byte("/*!")) || bytes.HasPrefix(text, []byte("/*M!")):
			rest := text[bytes.IndexByte(text, '!')+1:]
			digits := 0
			for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
				digits++
			}
			if v, err := strconv.Atoi(string(rest[:digits])); err == nil && v > version {
				_, text, _ = bytes.Cut(rest, []byte("*/"))
				continue
			}
			text = rest[digits:]
		case bytes.HasPrefix(text, []byte("/*")):
			_, text, _ = bytes.Cut(text[2:], []byte("*/"))
		case bytes.HasPrefix(text, []byte("*/")):
			text = text[2:]
		default:
			n := 0
			for n < len(text) && (text[n] >= 'A' && text[n] <= 'Z' || text[n] >= 'a' && text[n] <= 'z' || text[n] == '_') {
				n++
			}
			if n == 0 {
				return strings.Join(words, " ")
			}
			words = append(words, strings.ToUpper(string(text[:n])))
			text = text[n:]
		}
	}
	return strings.Join(words, " ")
}

// serverVersion is the server's version as a versioned comment compares it: 101119 for
// "10.11.19-MariaDB-0+deb12u1".
func serverVersion(ctx context.Context, conn *sql.Conn) (int, error) {
	var v string
	if err := conn.QueryRowContext(ctx, "SELECT @@version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read the server's version: %w", err)
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); err != nil {
		return 0, fmt.Errorf("read the server's version %q: %w", v, err)
	}
	return major*10000 + minor*100 + patch, nil
}

var createTable = []byte("CREATE TABLE `")

// insertTable is the table of "INSERT INTO `t` ...", as mariadb-dump writes it.
func insertTable(text []byte) (string, bool) { return quotedName(text, insertInto) }

// quotedName is the name quoted with backticks that text starts with after prefix, which
// ends with the opening backtick.
func quotedName(text, prefix []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(text, prefix)
	if !ok {
		return "", false
	}
	var name []byte
	for i := 0; i < len(rest); i++ {
		if rest[i] != '`' {
			name = append(name, rest[i])
			continue
		}
		if i+1 < len(rest) && rest[i+1] == '`' {
			name = append(name, '`')
			i++
			continue
		}
		return string(name), len(name) > 0
	}
	return "", false
}
