// Package firewall owns emrkit's ufw configuration of an EMR server (design sections 2.4, 2.7
// and 8): the rules derived from firewall.* in the configuration (deny incoming, allow
// outgoing, the EMR's HTTPS port and SSH open, MariaDB and drugref local-only), the ufw
// application profile, the SSH lock-out guard, and the journal step kinds that apply all of it
// in a safe order and undo exactly what emrkit added.
//
// Why it is shaped this way:
//   - ufw is driven only through its command line (/usr/sbin/ufw, fixed argv, LC_ALL=C), the
//     interface ufw keeps stable; every port and address is validated before it reaches argv.
//   - Every rule emrkit adds carries the comment "emrkit". ufw replaces an existing rule that
//     differs only in comment or action, so emrkit never adds a rule whose match already exists
//     (it would take over the admin's rule), and it deletes with the same comment, which ufw
//     honours only on an exact match: an admin's rule for the same port is never deleted.
//   - SSH is allowed before the default policy turns to deny and before ufw is enabled; when
//     the session is remote and its SSH port cannot be found, nothing is changed.
//   - In a chroot (a root directory other than pid 1's: RootDetector) nothing touches the
//     kernel firewall unless EMRKIT_CHROOT_FIREWALL=1 says the chroot has a network namespace
//     of its own. A private mount namespace over the same root is not a chroot.
package firewall
