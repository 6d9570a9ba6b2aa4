// Package openemr owns the hardening of an OpenEMR install ("Securing OpenEMR", checked
// against OpenEMR 7.0 and 8.x; ../shared/openemr-facts.md): finding the install, locking the
// setup and upgrade scripts (mode 0600 root:root rather than deleting them: undo-able, and
// `php sql_upgrade.php` still runs from a root shell), leaving sqlconf.php readable by the web
// server's group only, the Apache snippet that keeps patient documents, EDI/ERA files, the
// scripts and contrib/ off the web, the password globals, and warnings about MariaDB accounts.
//
// It never touches a patient document, and nothing under sites/*/documents — least of all
// documents/logs_and_misc/methods/, which holds OpenEMR's encryption keys.
package openemr
