package doctor

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

const (
	infileTitle   = "MariaDB refuses LOAD DATA LOCAL (local_infile off)"
	filePrivTitle = "MariaDB reads and writes files only in one directory (secure_file_priv)"
	bindTitle     = "MariaDB listens on loopback or the socket only"
	nameTitle     = "MariaDB matches accounts by address, not DNS (skip_name_resolve)"
	rootTitle     = "how MariaDB's root@localhost logs in"
)

// mariadbServer reports MariaDB's server settings that bear on the EMR's data. emrkit changes
// none of them: OpenEMR's setup loads code sets with LOAD DATA LOCAL, and the others need a
// restart of the clinic's database, which is the DBA's to choose.
func (h *host) mariadbServer() []Check {
	var infile, skipNet, skipName bool
	var filePriv, bind sql.NullString
	err := h.dbErr
	if err == nil {
		err = h.db.QueryRowContext(h.ctx, "SELECT @@GLOBAL.local_infile, @@GLOBAL.secure_file_priv, @@GLOBAL.bind_address, "+
			"@@GLOBAL.skip_networking, @@GLOBAL.skip_name_resolve").Scan(&infile, &filePriv, &bind, &skipNet, &skipName)
	}
	if err != nil {
		err := fmt.Errorf("MariaDB's settings cannot be read: %v", err)
		return []Check{skipped("mariadb.local-infile", infileTitle, hipaaAccess, err), skipped("mariadb.secure-file-priv", filePrivTitle, hipaaAccess, err),
			skipped("mariadb.bind-address", bindTitle, hipaaTransmit, err), skipped("mariadb.skip-name-resolve", nameTitle, hipaaAccess, err),
			skipped("mariadb.root-account", rootTitle, hipaaUniqueUser, err)}
	}
	const cnf = " in a drop-in of /etc/mysql/mariadb.conf.d/ ([mariadbd]), then restart MariaDB"
	warn := func(id, title, safeguard, finding, fix string) Check {
		return Check{ID: id, Title: title, Status: Warn, Safeguard: safeguard, Finding: finding, Fix: fix}
	}
	var out []Check
	if infile {
		out = append(out, warn("mariadb.local-infile", infileTitle, hipaaAccess,
			"local_infile is ON: a client, or an SQL injection through one, can make the server read the client's files; OpenEMR's setup asks for it only to load code sets",
			"once the code sets are loaded: local_infile = 0"+cnf))
	} else {
		out = append(out, check("mariadb.local-infile", infileTitle, hipaaAccess, true, "local_infile is OFF", "", ""))
	}
	// MariaDB, unlike MySQL, reads NULL (its default) as no limit at all.
	switch {
	case filePriv.String == "":
		out = append(out, warn("mariadb.secure-file-priv", filePrivTitle, hipaaAccess,
			"secure_file_priv is unset: an account with FILE can read and write, by SELECT ... INTO OUTFILE and LOAD_FILE(), every file the mysql user can",
			"secure_file_priv = /var/lib/mysql-files"+cnf))
	default:
		out = append(out, check("mariadb.secure-file-priv", filePrivTitle, hipaaAccess, true, "secure_file_priv is "+filePriv.String, "", ""))
	}
	// No bind_address (NULL) listens on every address.
	switch b := strings.TrimSpace(bind.String); {
	case skipNet:
		out = append(out, check("mariadb.bind-address", bindTitle, hipaaTransmit, true, "skip_networking: the socket only", "", ""))
	case b == "127.0.0.1" || b == "::1" || b == "localhost":
		out = append(out, check("mariadb.bind-address", bindTitle, hipaaTransmit, true, "bind_address is "+b, "", ""))
	default:
		if b == "" {
			b = "unset"
		}
		out = append(out, warn("mariadb.bind-address", bindTitle, hipaaTransmit,
			fmt.Sprintf("bind_address is %s: MariaDB listens on every address, and only the firewall keeps 3306 closed (firewall.listeners)", b),
			"bind-address = 127.0.0.1"+cnf+" (the portal's replica connects over its tunnel, to 127.0.0.1)"))
	}
	out = append(out, check("mariadb.skip-name-resolve", nameTitle, hipaaAccess, skipName, "skip_name_resolve is ON", "", ""))
	if !skipName {
		out[len(out)-1] = warn("mariadb.skip-name-resolve", nameTitle, hipaaAccess,
			"skip_name_resolve is OFF: a grant to a host name is matched by reverse DNS, which whoever controls that DNS can forge",
			"skip-name-resolve"+cnf+", after replacing host names in grants with addresses ('localhost' keeps working)")
	}
	return append(out, h.rootAccount())
}

// rootAccount says how root@localhost authenticates, from SHOW CREATE USER (whose hash is
// never shown). Debian's is socket-only: the system's root, by `sudo mariadb`.
func (h *host) rootAccount() Check {
	const id = "mariadb.root-account"
	var create string
	err := h.db.QueryRowContext(h.ctx, "SHOW CREATE USER 'root'@'localhost'").Scan(&create)
	me, isMy := errors.AsType[*mysql.MySQLError](err)
	switch {
	case isMy && me.Number == 1396: // ER_CANNOT_USER: no such account
		return check(id, rootTitle, hipaaUniqueUser, true, "there is no root@localhost account", "", "")
	case err != nil:
		return skipped(id, rootTitle, hipaaUniqueUser, err)
	}
	c := strings.ToLower(create)
	socket := strings.Contains(c, "unix_socket")
	unusable := strings.Contains(c, "using 'invalid'")
	password := strings.Contains(c, "identified by") || strings.Contains(c, "mysql_native_password") && !unusable || strings.Contains(c, "ed25519")
	switch {
	case socket && !password:
		return check(id, rootTitle, hipaaUniqueUser, true, "by unix_socket only: the system's root (sudo mariadb), no password that could be guessed or leak", "", "")
	case socket:
		return Check{ID: id, Title: rootTitle, Status: Warn, Safeguard: hipaaUniqueUser,
			Finding: "by unix_socket or a password: the password is a second way in, for anyone who learns it",
			Fix:     "ALTER USER root@localhost IDENTIFIED VIA unix_socket (emrkit itself connects over the socket)"}
	}
	return check(id, rootTitle, hipaaUniqueUser, true, "by password only (no unix_socket): keep it out of scripts and shell history", "", "")
}
