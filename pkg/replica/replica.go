package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// Since is the release that introduced the portal replica.
const Since = "0.6.0"

// Names and numbers the portal replica uses on both machines.
const (
	// ServiceName is the intermediate's systemd unit.
	ServiceName = "emrkit-portal-replica.service"
	// SourceUser is the account on the primary the intermediate replicates as.
	SourceUser = "emrkit_repl"
	// OffsiteUser is the account on the intermediate the offsite replica replicates as.
	OffsiteUser = "emrkit_offsite"
	// AccountHost is the one host both accounts log in from: the intermediate reaches the
	// primary over 127.0.0.1, and the tunnel's connections reach the intermediate from it.
	AccountHost = "127.0.0.1"
	// IntermediateServerID and OffsiteServerID are the replicas' server_id values; the
	// primary keeps its own. IntermediateDomainID is the intermediate's gtid_domain_id.
	IntermediateServerID = 60601
	IntermediateDomainID = 60601
	OffsiteServerID      = 60602
	// Mariadbd is the server binary the unit runs.
	Mariadbd = "/usr/sbin/mariadbd"
	// SourcePasswordFile and OffsitePasswordFile are the generated passwords' file names
	// in Env.PasswordDir.
	SourcePasswordFile  = "portal-replica-source.password"
	OffsitePasswordFile = "portal-replica-offsite.password"
)

// Log names and retention.
const (
	primaryBinlog      = "mariadb-bin"              // in the primary's datadir
	intermediateBinlog = "portal-replica-bin"       // in the intermediate's datadir
	intermediateRelay  = "portal-replica-relay-bin" // idem
	offsiteRelay       = "portal-relay-bin"         // in the offsite server's datadir
	// binlogExpireSeconds keeps 14 days of binary log: an intermediate (or offsite replica)
	// down longer must be seeded again.
	binlogExpireSeconds = 14 * 24 * 3600
)

// Env is the host as the portal replica sees it; tests point every path elsewhere.
type Env struct {
	// PrimaryDropIn is the primary's binary-log drop-in.
	PrimaryDropIn string
	// ConfigFile is the intermediate's option file (mariadbd --defaults-file).
	ConfigFile string
	// DataDir is the directory emrkit owns for the intermediate: data/ (mariadbd's
	// datadir), tmp/ and the nonce file. The server logs to stderr: the journal under
	// systemd (journalctl -u emrkit-portal-replica).
	DataDir string
	// RunDir holds the socket and pid file (the unit's RuntimeDirectory when under /run).
	RunDir string
	// UnitDir is where the unit file goes.
	UnitDir string
	// PasswordDir holds the generated replication passwords (0600 root).
	PasswordDir string
	// SystemdRunning reports whether systemd manages this host (nil: /run/systemd/system
	// is a directory, as sd_booted(3) checks).
	SystemdRunning func() bool
	// RestartPrimary allows this run to restart the clinic's MariaDB once, to start the
	// binary log (`emrkit apply --restart-mariadb`, debconf emrkit/portal-replica-restart).
	RestartPrimary bool
}

// DefaultEnv is a Debian host.
func DefaultEnv() Env {
	return Env{
		PrimaryDropIn:  "/etc/mysql/mariadb.conf.d/60-emrkit-portal-binlog.cnf",
		ConfigFile:     "/etc/emrkit/portal-replica.cnf",
		DataDir:        "/var/lib/emrkit-portal-replica",
		RunDir:         "/run/emrkit-portal-replica",
		UnitDir:        "/etc/systemd/system",
		PasswordDir:    "/etc/emrkit",
		SystemdRunning: sdBooted,
	}
}

func sdBooted() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// Replica is what to replicate and where.
type Replica struct {
	// Primary is the clinic's MariaDB (root), shared with the run's other steps.
	Primary *mariadb.Shared
	// Database is OpenEMR's database; Tables the portal's tables in it.
	Database string
	Tables   []string
	// Port is the intermediate's port on 127.0.0.1; RemotePort is where the offsite
	// replica reaches it through the tunnel.
	Port       int
	RemotePort int
}

// Paths derived from Env.
func (e Env) socket() string   { return filepath.Join(e.RunDir, "mysqld.sock") }
func (e Env) pidFile() string  { return filepath.Join(e.RunDir, "mysqld.pid") }
func (e Env) dataDir() string  { return filepath.Join(e.DataDir, "data") }
func (e Env) tmpDir() string   { return filepath.Join(e.DataDir, "tmp") }
func (e Env) unitPath() string { return filepath.Join(e.UnitDir, ServiceName) }
func (e Env) sourcePassword() string {
	return filepath.Join(e.PasswordDir, SourcePasswordFile)
}
func (e Env) offsitePassword() string {
	return filepath.Join(e.PasswordDir, OffsitePasswordFile)
}

// safePath is what may stand unquoted in an option file and a unit's ExecStart.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9._+/-]*$`)

// check validates env's paths and fills in SystemdRunning.
func (e Env) check() (Env, error) {
	for _, p := range []struct{ key, v string }{
		{"PrimaryDropIn", e.PrimaryDropIn}, {"ConfigFile", e.ConfigFile}, {"DataDir", e.DataDir},
		{"RunDir", e.RunDir}, {"UnitDir", e.UnitDir}, {"PasswordDir", e.PasswordDir},
	} {
		if !safePath.MatchString(p.v) || filepath.Clean(p.v) != p.v || p.v == "/" {
			return e, fmt.Errorf("portal replica: %s %q: an absolute path of letters, digits and . _ + - / is needed", p.key, p.v)
		}
	}
	// The socket path must fit sockaddr_un (108 bytes with the NUL).
	if len(e.socket()) > 107 {
		return e, fmt.Errorf("portal replica: RunDir %q is too long for a socket path", e.RunDir)
	}
	if e.SystemdRunning == nil {
		e.SystemdRunning = sdBooted
	}
	return e, nil
}

// validate checks r's names and ports; a bad one is one line naming the config key. The
// primary's connection is Steps' concern: OffsiteConfig needs none.
func (r Replica) validate() error {
	if err := mariadb.ValidIdentifier(r.Database); err != nil {
		return fmt.Errorf("portal replica: database name: %w; fix database.name in the emrkit config", err)
	}
	if len(r.Tables) == 0 {
		return fmt.Errorf("portal replica: no portal tables; set portal.tables in the emrkit config")
	}
	for i, t := range r.Tables {
		if err := mariadb.ValidIdentifier(t); err != nil {
			return fmt.Errorf("portal replica: portal table: %w; fix portal.tables in the emrkit config", err)
		}
		if slices.Contains(r.Tables[:i], t) {
			return fmt.Errorf("portal replica: portal table %q is listed twice; fix portal.tables in the emrkit config", t)
		}
	}
	for _, p := range []struct {
		key string
		n   int
	}{{"portal.replica.port", r.Port}, {"portal.replica.remote_port", r.RemotePort}} {
		if p.n < 1 || p.n > 65535 {
			return fmt.Errorf("portal replica: %s %d is not a TCP port (1-65535)", p.key, p.n)
		}
	}
	return nil
}

// qualified is db.table for each portal table, as replicate_do_table writes them.
func (r Replica) qualified() []string {
	out := make([]string, len(r.Tables))
	for i, t := range r.Tables {
		out[i] = r.Database + "." + t
	}
	return out
}

// Steps returns the portal replica's steps in run order (see the package comment). It
// connects to nothing; bad names or paths are an error before any step exists.
func Steps(r Replica, env Env, since string) ([]step.Step, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	if r.Primary == nil {
		return nil, fmt.Errorf("portal replica: no connection to MariaDB")
	}
	env, err := env.check()
	if err != nil {
		return nil, err
	}
	binlog := binlogStep{primary: r.Primary, r: r, path: env.PrimaryDropIn, since: since}
	gate := binlogGate{primary: r.Primary, dropIn: env.PrimaryDropIn}
	gated := func(s step.Step) step.Step { return step.Gated{Step: s, Gate: gate.check} }
	rs := &restart{systemdRunning: env.SystemdRunning}
	svc := serviceStep{env: env, since: since, restart: rs}
	running := func(s step.Step) step.Step {
		// The binary log first (its reason names the restart), then the intermediate
		// answering. Starting the service opens the gate (After), so a dry run in which the
		// service would start reports these as applying too; the service step is itself
		// gated on the binary log, so it never would while that gate is shut.
		return step.Gated{Step: s, Gate: func(ctx context.Context) error {
			if err := gate.check(ctx); err != nil {
				return err
			}
			db, err := openIntermediate(ctx, env.socket())
			if err == nil {
				db.Close()
			}
			return err
		}, After: svc.ID()}
	}
	source := accountStep{
		kind: SourceAccountKind, server: serverPrimary, primary: r.Primary, user: SourceUser,
		passwordFile: env.sourcePassword(), since: since,
		what: "replication account on MariaDB for the portal replica (REPLICATION SLAVE only)",
	}
	offsite := accountStep{
		kind: OffsiteAccountKind, server: serverIntermediate, socket: env.socket(), user: OffsiteUser,
		database: r.Database, tables: r.Tables, passwordFile: env.offsitePassword(), since: since,
		what: "offsite replica's account on the portal replica (REPLICATION SLAVE, SELECT on the portal tables)",
	}
	return []step.Step{
		binlog,
		primaryRestartStep{primary: r.Primary, env: env},
		gated(source),
		gated(configStep{Step: managedfile.Step{Path: env.ConfigFile, Content: []byte(ServerConfig(r, env)), Mode: 0o644,
			What: "portal replica server settings", SinceVersion: since}, restart: rs}),
		gated(unitStep{Step: managedfile.Step{Path: env.unitPath(), Content: []byte(Unit(env)), Mode: 0o644,
			What: "portal replica service", SinceVersion: since}, restart: rs}),
		gated(dataDirStep{env: env, since: since}),
		gated(svc),
		running(replicationStep{r: r, env: env, since: since}),
		running(offsite),
	}, nil
}

// Undoers undoes every kind the portal replica journals. primary is the clinic's MariaDB.
func Undoers(env Env, primary *mariadb.Shared) step.Registry {
	if env.SystemdRunning == nil {
		env.SystemdRunning = sdBooted
	}
	return step.Registry{
		BinlogKind:         binlogUndoer{},
		SourceAccountKind:  accountUndoer{primary: primary},
		OffsiteAccountKind: accountUndoer{primary: primary},
		managedfile.Kind:   managedfile.Undoer{},
		UnitKind:           unitUndoer{systemdRunning: env.SystemdRunning},
		DataDirKind:        dataDirUndoer{},
		ServiceKind:        serviceUndoer{systemdRunning: env.SystemdRunning},
		ReplicationKind:    replicationUndoer{},
		PrimaryRestartKind: primaryRestartUndoer{primary: primary},
	}
}

// StartArgs is the argv of the intermediate's server, as the unit runs it (as mysql).
// --defaults-file must be the first option.
func StartArgs(env Env) []string {
	return []string{Mariadbd, "--defaults-file=" + env.ConfigFile}
}

const header = "# Written by emrkit (portal replica, since " + Since + "). emrkit removes this file on\n" +
	"# revert while it holds exactly this content; edit the emrkit config instead.\n"

// dropIn is the primary's binary-log drop-in: full when MariaDB has no binary log, only the
// format when it has one already (its log_bin, wherever it is set, is left alone).
func dropIn(full bool) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("# The binary log the local portal replica (" + ServiceName + ") reads.\n" +
		"# ROW format: the replica's table filter needs the real table of every change.\n" +
		"# Takes effect when MariaDB restarts (systemctl restart mariadb).\n[mariadbd]\n")
	if full {
		// Relative: in the datadir (0700 mysql); binary logs hold patient data.
		b.WriteString("log_bin = " + primaryBinlog + "\n")
		b.WriteString("binlog_expire_logs_seconds = " + strconv.Itoa(binlogExpireSeconds) + "\n")
	}
	b.WriteString("binlog_format = ROW\n")
	return b.String()
}

// ServerConfig is the intermediate's option file.
func ServerConfig(r Replica, env Env) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("# The portal's filtered replica: replicates only the portal tables from this server's\n" +
		"# MariaDB; the offsite replica reads its binary log through the tunnel. Run by\n" +
		"# " + ServiceName + " as mysql.\n[mariadbd]\n")
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s = %v\n", k, v) }
	kv("datadir", env.dataDir())
	kv("tmpdir", env.tmpDir())
	kv("socket", env.socket())
	kv("pid-file", env.pidFile())
	kv("port", r.Port)
	kv("bind-address", "127.0.0.1")
	b.WriteString("skip-name-resolve\n")
	kv("local_infile", 0)
	kv("server_id", IntermediateServerID)
	kv("gtid_domain_id", IntermediateDomainID)
	kv("log_bin", intermediateBinlog)
	kv("log_slave_updates", 1)
	kv("binlog_format", "ROW")
	b.WriteString("# The SQL text of a statement may name other tables' values: never pass it on.\n")
	kv("binlog_annotate_row_events", 0)
	kv("replicate_annotate_row_events", 0)
	kv("binlog_expire_logs_seconds", binlogExpireSeconds)
	kv("relay_log", intermediateRelay)
	kv("read_only", 1)
	for _, q := range r.qualified() {
		kv("replicate_do_table", q)
	}
	kv("character-set-server", "utf8mb4")
	kv("collation-server", "utf8mb4_general_ci")
	// Few clients (emrkit, the offsite replica, a seeding dump) and few tables: with the
	// defaults mariadbd wants 32184 open files, more than systemd's soft limit of 1024 that
	// it cannot raise without CAP_SYS_RESOURCE, and it warns at every start.
	kv("max_connections", 50)
	kv("table_open_cache", 400)
	kv("table_open_cache_instances", 1)
	kv("innodb_buffer_pool_size", "64M")
	kv("innodb_log_file_size", "32M")
	return b.String()
}

// Unit is the intermediate's systemd unit.
func Unit(env Env) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("[Unit]\nDescription=emrkit portal replica (MariaDB, portal tables only)\n" +
		"After=network.target mariadb.service\n\n[Service]\nType=notify\nUser=mysql\nGroup=mysql\n")
	b.WriteString("ExecStart=" + strings.Join(StartArgs(env), " ") + "\n")
	if filepath.Dir(env.RunDir) == "/run" {
		b.WriteString("RuntimeDirectory=" + filepath.Base(env.RunDir) + "\nRuntimeDirectoryMode=0750\n")
	}
	b.WriteString("UMask=007\nRestart=on-abort\nRestartSec=5s\nTimeoutStartSec=900\nTimeoutStopSec=900\n" +
		"NoNewPrivileges=true\nCapabilityBoundingSet=\nPrivateTmp=true\nPrivateDevices=true\n" +
		"ProtectSystem=strict\nReadWritePaths=" + env.DataDir + "\nProtectHome=true\n" +
		"ProtectKernelTunables=true\nProtectKernelModules=true\nProtectControlGroups=true\n" +
		"RestrictSUIDSGID=true\nRestrictRealtime=true\nRestrictNamespaces=true\nLockPersonality=true\n" +
		"ProtectClock=true\nProtectKernelLogs=true\nProtectHostname=true\nProtectProc=invisible\nProcSubset=pid\n" +
		"MemoryDenyWriteExecute=true\nRemoveIPC=true\nDevicePolicy=closed\n" +
		// It talks to the primary and to the offsite replica (through the tunnel) on loopback only.
		"RestrictAddressFamilies=AF_UNIX AF_INET\nIPAddressDeny=any\nIPAddressAllow=localhost\n" +
		// A call outside the filter fails with EPERM rather than killing the server mid-write.
		"SystemCallArchitectures=native\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\n" +
		"SystemCallErrorNumber=EPERM\n\n" +
		"[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}
