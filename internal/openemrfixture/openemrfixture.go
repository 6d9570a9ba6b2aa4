// Package openemrfixture makes an OpenEMR-like install for tests and the demo, from the facts
// checked against OpenEMR 7.0 and 8.x (../shared/openemr-facts.md): version.php, the setup
// and upgrade scripts at the root, sites/default/sqlconf.php in the 7.x or 8.x format, a
// patient document and the encryption-key directory under sites/default/documents, the
// portal, apis/ and oauth2/ with their .htaccess rewrites, contrib/, and library/globals.inc.php
// (the version's own list of its globals); a 4.1.1 tree in the shape of the seed's era; and the
// `globals` table with some of the password globals set and some missing.
package openemrfixture

import (
	"fmt"
	"os"
	"path/filepath"
)

// Tree describes the fixture tree to write.
type Tree struct {
	// Major is 4 (4.1.1: the 4.x scripts, phpMyAdmin, no portal or API), 7 (7.0.2, sqlconf.php
	// with $disable_utf8_flag and $db_encoding) or 8.
	Major    int
	Database string
	// Owner of every file (the web server's uid/gid on many installs; 0 for root).
	UID, GID int
}

// Files are the fixture's paths (relative to the root) with their content.
func (t Tree) Files() map[string]string {
	php := func(what string) string { return "<?php\n// OpenEMR fixture: " + what + "\necho 'ok';\n" }
	rewrite := func(to string) string {
		return "RewriteEngine On\nRewriteCond %{REQUEST_FILENAME} !-f\nRewriteCond %{REQUEST_FILENAME} !-d\nRewriteCond %{REQUEST_FILENAME} !-l\n" +
			"RewriteRule (.*) " + to + "?_REWRITE_COMMAND=$1 [QSA,L]\n"
	}
	minor, patch := map[int]int{4: 1}[t.Major], map[int]int{4: 1, 7: 2, 8: 0}[t.Major]
	version := fmt.Sprintf("<?php\n$v_major = '%d';\n$v_minor = '%d';\n$v_patch = '%d';\n$v_tag   = '';\n$v_realpatch = '0';\n$v_database = %d;\n$v_acl = 12;\n",
		t.Major, minor, patch, map[int]int{4: 97, 7: 469, 8: 527}[t.Major])
	sqlconf := "<?php\n//  OpenEMR\n//  MySQL Config\n\n"
	if t.Major == 7 {
		sqlconf += "global $disable_utf8_flag;\n$disable_utf8_flag = false;\n\n"
	}
	sqlconf += "$host\t= 'localhost';\n$port\t= '3306';\n$login\t= 'openemr';\n$pass\t= 'fixture-password';\n$dbase\t= '" + t.Database + "';\n"
	if t.Major == 7 {
		sqlconf += "$db_encoding\t= 'utf8mb4';\n"
	}
	sqlconf += "\n$sqlconf = array();\nglobal $sqlconf;\n$sqlconf[\"host\"]= $host;\n$sqlconf[\"port\"] = $port;\n$sqlconf[\"login\"] = $login;\n" +
		"$sqlconf[\"pass\"] = $pass;\n$sqlconf[\"dbase\"] = $dbase;\n\n//////////////////////////\n//////DO NOT TOUCH THIS///\n$config = 1; /////////////\n//////////////////////////\n?>\n"
	if t.Major == 4 {
		return map[string]string{
			"version.php": version, "index.php": php("login"), "interface/login/login.php": php("login form"),
			"admin.php": php("site admin"), "setup.php": php("setup"), "sql_upgrade.php": php("upgrade"),
			"acl_setup.php": php("acl setup"), "acl_upgrade.php": php("acl upgrade"), "gacl/setup.php": php("phpgacl setup"),
			"sl_convert.php": php("sql-ledger convert"), "ippf_upgrade.php": php("ippf upgrade"),
			"sites/default/sqlconf.php":              sqlconf,
			"sites/default/documents/1/referral.pdf": "%PDF-1.4 patient referral\n",
			"sites/default/era/remit.835":            "ISA*00*fixture\n",
			"library/globals.inc.php":                globalsMetadata(t.Major),
			"phpmyadmin/index.php":                   php("bundled phpMyAdmin"),
			"contrib/util/backup_oemr.sh":            "#!/bin/sh\n# fixture\n",
			"contrib/icd9/load.txt":                  "icd9\n",
		}
	}
	return map[string]string{
		"library/globals.inc.php": globalsMetadata(t.Major),
		"version.php":             version, "index.php": php("login"), "interface/admin.php": php("not a setup script"),
		"admin.php": php("site admin"), "setup.php": php("setup"), "sql_upgrade.php": php("upgrade"),
		"sql_patch.php": php("patch"), "acl_upgrade.php": php("acl upgrade"), "ippf_upgrade.php": php("ippf upgrade"),
		"sites/default/sqlconf.php":                         sqlconf,
		"sites/default/documents/.htaccess":                 "Allow From None\nDeny From All\n",
		"sites/default/documents/1/referral.pdf":            "%PDF-1.4 patient referral\n",
		"sites/default/documents/logs_and_misc/methods/one": "fixture drive key\n",
		"sites/default/documents/era/remit.835":             "ISA*00*fixture\n",
		"portal/index.php":                                  php("portal"), "portal/patient/index.php": php("portal app"),
		"portal/patient/.htaccess": rewrite("index.php"),
		"apis/dispatch.php":        php("api"), "apis/.htaccess": "SetEnvIf Authorization \"(.*)\" HTTP_AUTHORIZATION=$1\n" + rewrite("dispatch.php"),
		"oauth2/authorize.php": php("oauth2"), "oauth2/.htaccess": "SetEnvIf Authorization \"(.*)\" HTTP_AUTHORIZATION=$1\n" + rewrite("authorize.php"),
		"contrib/util/installScripts/InstallerAuto.php": php("installer"),
		"contrib/icd9/load.txt":                         "icd9\n", "contrib/icd10/load.txt": "icd10\n",
		"gacl/admin/index.php": php("phpgacl admin"),
	}
}

// globalsMetadata is library/globals.inc.php cut to the security tab, in the shape of the
// release: 4.1.1's password_history is a yes/no and it has no minimum length or failed-login
// limit; 7.x's is a list of counts, with the IP lockout (7.0.2) and the API switches.
func globalsMetadata(major int) string {
	def := func(name, kind, value string) string {
		return fmt.Sprintf("        '%s' => array(\n            xl('%s'),\n            %s,\n            '%s',\n            xl('Fixture.')\n        ),\n", name, name, kind, value)
	}
	list := "array(\n                '0' => xl('No'),\n                '1' => '1',\n                '5' => '5',\n            )"
	b := "<?php\n// OpenEMR fixture: globals metadata\n$GLOBALS_METADATA = array(\n    'Security' => array(\n" +
		def("timeout", "'num'", "7200") + def("secure_password", "'bool'", "1") + def("password_expiration_days", "'num'", "180") +
		def("password_grace_time", "'num'", "30")
	if major == 4 {
		b += def("password_history", "'bool'", "0")
	} else {
		b += def("gbl_minimum_password_length", list, "9") + def("password_history", list, "5") +
			def("password_max_failed_logins", "'num'", "20") + def("ip_max_failed_logins", "'num'", "100")
	}
	b += "    ),\n    'Logging' => array(\n" + def("enable_auditlog", "'bool'", "1") + "    ),\n"
	if major >= 7 {
		b += "    'Connectors' => array(\n" + def("rest_api", "'bool'", "0") + def("rest_fhir_api", "'bool'", "0") + "    ),\n"
	}
	return b + ");\n"
}

// Write writes the tree at root: files 0644, directories 0755, owned by UID:GID.
func (t Tree) Write(root string) error {
	for rel, content := range t.Files() {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, t.UID, t.GID)
	})
}

// GlobalsSQL creates OpenEMR's `globals` table with two of the five password globals set to
// OpenEMR 7.0's defaults, one set to a weak value, and two missing (an install older than
// the global, or a row deleted by hand), OpenEMR's defaults for the idle logoff, the audit log,
// the per-address lockout and the APIs, plus unrelated rows.
const GlobalsSQL = "CREATE TABLE `globals` (`gl_name` varchar(63) NOT NULL, `gl_index` int(11) NOT NULL DEFAULT 0, " +
	"`gl_value` varchar(255) NOT NULL DEFAULT '', PRIMARY KEY (`gl_name`, `gl_index`)) ENGINE=InnoDB;\n" +
	"INSERT INTO globals (gl_name, gl_index, gl_value) VALUES ('secure_password', 0, '1'), ('password_history', 0, '5'), " +
	"('gbl_minimum_password_length', 0, '6'), ('timeout', 0, '7200'), ('language_default', 0, 'English (Standard)'), " +
	"('css_header', 0, 'style_light.css'), ('css_header', 1, 'x'), ('enable_auditlog', 0, '1'), ('ip_max_failed_logins', 0, '100'), " +
	"('rest_api', 0, '0'), ('rest_fhir_api', 0, '0');\n"

// UsersSQL creates OpenEMR's users (cut to a few columns), users_secure (where the password
// hash lives) and, from 5.0.2 on, login_mfa_registrations: admin (active, TOTP registered),
// doctor (active, no MFA), former (inactive), and a row without a username (a group, as
// OpenEMR keeps them). Statements are separated by ";\n".
func UsersSQL(major int) string {
	q := "CREATE TABLE `users` (`id` bigint(20) NOT NULL AUTO_INCREMENT, `username` varchar(255) DEFAULT NULL, " +
		"`fname` varchar(255) DEFAULT NULL, `lname` varchar(255) DEFAULT NULL, `active` tinyint(1) NOT NULL DEFAULT 1, " +
		"PRIMARY KEY (`id`)) ENGINE=InnoDB;\n" +
		"CREATE TABLE IF NOT EXISTS `users_secure` (`id` bigint(20) NOT NULL, `username` varchar(255) DEFAULT NULL, " +
		"`password` varchar(255) DEFAULT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB;\n" +
		"INSERT INTO users (id, username, fname, lname, active) VALUES (1, 'admin', 'Admin', 'Fixture', 1), " +
		"(2, 'doctor', 'Doc', 'Fixture', 1), (3, 'former', 'Gone', 'Fixture', 0), (4, '', 'Group', 'Fixture', 1);\n" +
		"INSERT IGNORE INTO users_secure (id, username, password) VALUES (1, 'admin', '$2y$10$adminfixturehash'), " +
		"(2, 'doctor', '$2y$10$doctorfixturehash'), (3, 'former', '$2y$10$formerfixturehash');\n"
	if major >= 7 {
		q += "CREATE TABLE `login_mfa_registrations` (`user_id` bigint(20) NOT NULL, `name` varchar(30) NOT NULL, " +
			"`last_challenge` datetime DEFAULT NULL, `method` varchar(31) NOT NULL, `var1` text, `var2` text, " +
			"PRIMARY KEY (`user_id`, `name`)) ENGINE=InnoDB;\n" +
			"INSERT INTO login_mfa_registrations (user_id, name, method, var1) VALUES (1, 'phone', 'TOTP', 'fixture-encrypted-secret');\n"
	}
	return q
}

// PortalSQL creates the tables an offsite portal uses (patient_access_onsite as in OpenEMR's
// sql/database.sql, patient_data and openemr_postcalendar_events cut to a few columns) and
// two it must never see (users_secure with a password hash, pnotes with a clinical note),
// with a few rows each. Statements are separated by ";\n".
const PortalSQL = "CREATE TABLE `patient_access_onsite` (`id` INT NOT NULL AUTO_INCREMENT, `pid` bigint(20), " +
	"`portal_username` VARCHAR(100), `portal_pwd` VARCHAR(255), `portal_pwd_status` TINYINT DEFAULT '1', " +
	"`portal_login_username` VARCHAR(100) DEFAULT NULL, `portal_onetime` VARCHAR(255) DEFAULT NULL, " +
	"`date_created` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (`id`), UNIQUE KEY `pid` (`pid`)) ENGINE=InnoDB;\n" +
	"CREATE TABLE `patient_data` (`id` bigint(20) NOT NULL AUTO_INCREMENT, `pid` bigint(20) NOT NULL DEFAULT 0, " +
	"`fname` varchar(255) NOT NULL DEFAULT '', `lname` varchar(255) NOT NULL DEFAULT '', `DOB` date DEFAULT NULL, " +
	"`ss` varchar(255) NOT NULL DEFAULT '', `allow_patient_portal` varchar(31) NOT NULL DEFAULT '', " +
	"PRIMARY KEY (`id`), UNIQUE KEY `pid` (`pid`)) ENGINE=InnoDB;\n" +
	"CREATE TABLE `openemr_postcalendar_events` (`pc_eid` int(11) unsigned NOT NULL AUTO_INCREMENT, `pc_pid` varchar(11) DEFAULT NULL, " +
	"`pc_title` varchar(150) DEFAULT NULL, `pc_eventDate` date NOT NULL DEFAULT '0000-00-00', PRIMARY KEY (`pc_eid`)) ENGINE=InnoDB;\n" +
	"CREATE TABLE IF NOT EXISTS `users_secure` (`id` bigint(20) NOT NULL, `username` varchar(255) DEFAULT NULL, `password` varchar(255) DEFAULT NULL, " +
	"PRIMARY KEY (`id`)) ENGINE=InnoDB;\n" +
	"CREATE TABLE `pnotes` (`id` bigint(20) NOT NULL AUTO_INCREMENT, `pid` bigint(20) DEFAULT NULL, `body` longtext, " +
	"PRIMARY KEY (`id`)) ENGINE=InnoDB;\n" +
	"INSERT INTO patient_data (pid, fname, lname, DOB, ss, allow_patient_portal) VALUES " +
	"(1, 'Ada', 'Lovelace', '1815-12-10', '123-45-6789', 'YES'), (2, 'Alan', 'Turing', '1912-06-23', '987-65-4321', 'NO');\n" +
	"INSERT INTO patient_access_onsite (pid, portal_username, portal_pwd, portal_pwd_status) VALUES (1, 'ada', '$2y$10$fixturehash', 1);\n" +
	"INSERT INTO openemr_postcalendar_events (pc_pid, pc_title, pc_eventDate) VALUES ('1', 'Office Visit', '2026-12-10');\n" +
	"INSERT IGNORE INTO users_secure (id, username, password) VALUES (1, 'admin', '$2y$10$adminfixturehash');\n" +
	"INSERT INTO pnotes (pid, body) VALUES (1, 'fixture clinical note: not for the portal');\n"
