// Package replica owns the portal's filtered replica: a second, local mariadbd on the clinic
// server (the "intermediate") that replicates only the portal's tables from the clinic's
// MariaDB (the "primary"), so that an offsite read-only replica on the portal host can pull
// from it through the reverse SSH tunnel and never receive anything else.
//
// # Why a local intermediate
//
// MariaDB's replication filters (replicate_do_table) run in a replica's SQL thread; its IO
// thread stores the primary's whole binary log in the relay log first. A filter on the
// offsite host would therefore still put every table — users_secure, pnotes, every SSN — on
// the offsite disk (tested: fleet-tunnel-facts.md C). The filter runs here instead, on the
// clinic's own machine: the intermediate applies only the portal tables and, with
// log_slave_updates, writes only what it applied into its own binary log, which is all the
// offsite replica ever reads. The intermediate's relay log does hold everything, on the
// machine that holds the primary anyway.
//
// Two more leaks are closed on the intermediate: replicate_annotate_row_events=0 and
// binlog_annotate_row_events=0, because an Annotate_rows event carries the SQL text of the
// statement that changed a portal table, and a multi-table UPDATE names other tables' values
// (tested: `UPDATE patient_data p JOIN pnotes n … SET n.body='…'` put the note's text in the
// intermediate's binary log with the defaults). Account statements on the primary
// (CREATE USER, GRANT) do not pass the table filter (tested); database-level statements
// (CREATE/DROP DATABASE) do, carrying names only. Column filtering is impossible: every
// column of a portal table (patient_data.ss too) reaches the offsite host.
//
// # Steps, in order (each journaled, undone compare-and-swap)
//
//  1. Primary binary log (kind portal-replica.binlog): MariaDB must write a ROW-format binary
//     log (ROW is mandatory: statement events are filtered by the default database and
//     break on cross-table statements). A primary that already does needs nothing and gets
//     no drop-in. One without a binary log gets Env.PrimaryDropIn with log_bin=mariadb-bin
//     (in its datadir: /var/log/mysql is readable by group adm, and a binary log is patient
//     data), binlog_format=ROW and binlog_expire_logs_seconds (14 days). server_id is left
//     alone (the compiled default 1 is a valid source, another value is the DBA's; the
//     replicas use IntermediateServerID and OffsiteServerID, and a primary using either is
//     refused at preflight), and so are the GTID settings (MariaDB always logs GTIDs;
//     gtid_strict_mode is the DBA's choice). One with a binary log in another format gets a
//     drop-in with only binlog_format=ROW, never a second log_bin that would rename its
//     binary logs. emrkit does not SET GLOBAL binlog_format: that changes only sessions
//     opened afterwards, and one statement logged by an older session that reads a
//     non-portal table would stop the intermediate. Every later step is gated on the
//     running server having log_bin=1, binlog_format=ROW and TCP networking; until then
//     they defer with one line naming the one command that finishes them (RestartHint).
//  2. Primary restart (portal-replica.primary-restart): only when the admin allowed it for
//     the run (Env.RestartPrimary: `emrkit apply --restart-mariadb`, or debconf's
//     emrkit/portal-replica-restart for the package's runs) and the running server still
//     needs the drop-in: systemctl restart mariadb, once, so the same run goes on. A server
//     that does not come back gets emrkit's drop-in taken away and is started again. Its
//     undo has nothing to put back.
//  3. Source account on the primary (portal-replica.source-account): SourceUser@127.0.0.1
//     with REPLICATION SLAVE only, its password generated into a 0600 file in
//     Env.PasswordDir and given to the server only as its mysql_native_password hash
//     (IDENTIFIED BY PASSWORD '*…'), in a session with sql_log_bin=0 so the account is not
//     replicated anywhere. An account of that name that does not log in with the file's
//     password is refused at preflight, before anything changed.
//  4. The intermediate's option file (Env.ConfigFile, a managed file) and its systemd unit
//     (portal-replica.unit; ExecStart is StartArgs, User=mysql, sandboxed). Layout: the
//     mariadbd datadir is Env.DataDir/data, its tmpdir Env.DataDir/tmp (private: mariadbd
//     deletes #sql* files in its tmpdir at startup), socket and pid file in Env.RunDir; it
//     logs to stderr, so to the journal. A running intermediate takes a changed option
//     file or unit at the run's end: one daemon-reload and try-restart (restart), skipped
//     by the run that started it. It listens on 127.0.0.1:Port only, is read_only,
//     has its own server_id and gtid_domain_id (so a local write can never collide with the
//     primary's GTID domain), and resumes replication when it starts (no skip_slave_start:
//     a reboot must not silently stop the portal's data).
//  5. Data directory (portal-replica.datadir): created with a nonce file emrkit journals,
//     initialised by mariadb-install-db --no-defaults --user=mysql (root by unix socket
//     only) into data.new and renamed to data, so data/ exists only complete. Undo removes
//     Env.DataDir only while it holds the journaled nonce, shutting the server down first
//     if it still runs. It holds copies of the primary's rows only, so no backup is taken.
//  6. Service (portal-replica.service): systemctl enable --now; deferred while systemd is
//     not running (a chroot, an image build). Undo disables and stops it unless it was
//     enabled before.
//  7. Replication (portal-replica.replication), gated also on the intermediate answering on
//     its socket: STOP SLAVE, the filter set dynamically (so a changed portal.tables needs no
//     restart), the portal tables seeded by mariadb-dump --single-transaction --gtid
//     --master-data=1 from the primary piped into the intermediate's mariadb client (the
//     dump sets gtid_slave_pos; the load is binary-logged in the intermediate's own GTID
//     domain, so a re-seed also reaches the offsite replica), then CHANGE MASTER TO
//     127.0.0.1:<primary's @@port>, SourceUser, the password from its file (sent over the
//     socket, never on argv), MASTER_USE_GTID=slave_pos; START SLAVE, waiting until both
//     threads run. Its check fails, and `emrkit apply` re-seeds, when the filter or tables
//     differ (portal.tables changed: a table taken off the list is dropped, binary-logged,
//     so the offsite copy goes too) or a replication thread stopped on an error; an admin's
//     plain STOP SLAVE is left alone. Undo: STOP SLAVE; RESET SLAVE ALL while the replica
//     still replicates from SourceUser. (A changed portal.replica.port is written to the
//     option file, which restarts the intermediate at the run's end.)
//  8. Offsite account on the intermediate (portal-replica.offsite-account): OffsiteUser@
//     127.0.0.1 (the tunnel's connections arrive from 127.0.0.1) with REPLICATION SLAVE and
//     SELECT on each portal table — the intermediate holds nothing else, and SELECT lets the
//     offsite host seed itself with mariadb-dump through the tunnel — created with
//     sql_log_bin=0, password in its own 0600 file.
//
// OffsiteConfig prints what the offsite host needs (its my.cnf section, the seeding command,
// CHANGE MASTER with the offsite password, which appears nowhere else but its 0600 file);
// Lag reads the intermediate's SHOW SLAVE STATUS for `emrkit portal status`. No password
// ever reaches a command line, the journal or a log: client tools get an option file.
package replica
