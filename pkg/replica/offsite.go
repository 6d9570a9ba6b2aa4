package replica

import (
	"fmt"
	"strconv"
	"strings"
)

// offsiteSettings are the offsite server's [mariadbd] options, in order ("" value: a flag).
func offsiteSettings(r Replica) [][2]string {
	s := [][2]string{
		{"server_id", strconv.Itoa(OffsiteServerID)},
		{"read_only", "1"},
		{"skip-log-bin", ""},
		{"relay_log", offsiteRelay},
	}
	for _, q := range r.qualified() {
		s = append(s, [2]string{"replicate_do_table", q})
	}
	return s
}

// seedDumpArgs is the mariadb-dump the offsite host runs through the tunnel, without the
// password option.
func seedDumpArgs(r Replica) []string {
	return append([]string{
		"--host=127.0.0.1", "--port=" + strconv.Itoa(r.RemotePort), "--user=" + OffsiteUser,
		"--single-transaction", "--gtid", "--master-data=1", "--skip-triggers", "--no-tablespaces",
		r.Database,
	}, r.Tables...)
}

// changeMaster is the offsite server's CHANGE MASTER statement.
func changeMaster(r Replica, password string) string {
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=10;",
		r.RemotePort, OffsiteUser, password)
}

// OffsiteConfig is what `emrkit portal replica-config` prints for the offsite host's admin:
// its MariaDB settings, the seeding command, CHANGE MASTER and the notes. It holds the offsite
// account's password, read from its 0600 file: this output (the admin's terminal) is the only
// place it appears.
func OffsiteConfig(r Replica, env Env) (string, error) {
	if err := r.validate(); err != nil {
		return "", err
	}
	env, err := env.check()
	if err != nil {
		return "", err
	}
	pw, ok, err := readPassword(env.offsitePassword())
	if err != nil {
		return "", fmt.Errorf("portal replica: %w", err)
	}
	if !ok {
		return "", fmt.Errorf("portal replica: the offsite replica's account is not set up yet (%s is missing); run emrkit apply and check emrkit status", env.offsitePassword())
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# emrkit %s: the offsite read-only replica of the portal's tables (MariaDB 10.11 or later).\n", Since)
	p("# It replicates from the clinic's portal replica, reached through the reverse SSH tunnel\n")
	p("# at 127.0.0.1:%d on this host. KEEP THIS PRIVATE: it holds a replication password.\n\n", r.RemotePort)

	p("# 1. MariaDB settings, e.g. /etc/mysql/mariadb.conf.d/60-emrkit-portal-replica.cnf,\n")
	p("#    then: systemctl restart mariadb\n")
	p("[mariadbd]\n")
	for _, kv := range offsiteSettings(r) {
		if kv[1] == "" {
			p("%s\n", kv[0])
		} else {
			p("%s = %s\n", kv[0], kv[1])
		}
	}
	p("\n")

	p("# 2. Seed it with the portal tables through the tunnel (the dump asks for the password in 3):\n")
	p("mariadb -e 'CREATE DATABASE IF NOT EXISTS `%s`'\n", r.Database)
	args := seedDumpArgs(r)
	p("mariadb-dump %s --password %s | mariadb %s\n\n",
		strings.Join(args[:3], " "), strings.Join(args[3:], " "), r.Database)

	p("# 3. Point it at the clinic and start it, in `mariadb` as root:\n")
	p("%s\n", changeMaster(r, pw))
	p("START SLAVE;\n")
	p("SHOW SLAVE STATUS\\G\n\n")

	p("# Notes\n")
	p("# - Only %s reach this host; the clinic filters them on its own machine, so no other\n", strings.Join(r.qualified(), ", "))
	p("#   table is ever in this server's relay log. Column filtering is impossible with\n")
	p("#   replication: every column of these tables is copied (patient_data's ss too).\n")
	p("# - MariaDB 10.11 has no super_read_only: read_only=1 stops only accounts without READ ONLY\n")
	p("#   ADMIN, which ALL PRIVILEGES includes. Keep no all-privilege account here besides\n")
	p("#   root@localhost; give the portal application SELECT on %s.* only. The portal's own\n", r.Database)
	p("#   writes (patient_access_onsite) go to the clinic through the tunnel, never to this replica.\n")
	p("# - Replication resumes by itself after a reboot (no skip_slave_start) and retries until the\n")
	p("#   tunnel is up. The clinic keeps %d days of log: a replica down longer must be seeded\n", binlogExpireSeconds/86400)
	p("#   again (STOP SLAVE; RESET SLAVE ALL; then 2 and 3).\n")
	p("# - When the clinic changes its portal tables, a table taken off the list is dropped here too\n")
	p("#   (while the lines above still name it); print this again and update them.\n")
	p("# - The traffic is protected by the SSH tunnel; the account may log in from 127.0.0.1 only.\n")
	return b.String(), nil
}
