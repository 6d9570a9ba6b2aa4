// Package pgp owns OSCAR's encrypted patient exports (design section 8, "PGP export"): the
// GnuPG home of the Tomcat user, the export key (imported, or generated here with
// github.com/ProtonMail/go-crypto), the symmetric alternative, the PGP_* lines of
// oscar.properties, a self-test that replays OSCAR's exact call, and decryption of the
// exports an admin receives.
//
// OSCAR encrypts an export by running exec([PGP_BIN, PGP_CMD, file, PGP_KEY]) with the
// single environment entry PGP_ENV, in the export directory, as the Tomcat user; success is
// exit 0 and file.pgp existing. The modes fill those four properties as follows:
//
//	public-key, generate: /usr/bin/pgpgpg -e FILE FINGERPRINT, GNUPGHOME=<Tomcat's GnuPG home>
//	symmetric:            /usr/bin/emrkit oscar-encrypt FILE PASSFILE, EMRKIT_PGP=symmetric
//
// pgpgpg hands the last argument to gpg as --recipient, so PGP_KEY is the key's fingerprint:
// unlike a user id it can never match a second key in the keyring.
//
// # Generated secrets across a crash
//
// The runner journals a step's Desired before Apply and hands that Desired back to Apply
// after a crash, so a step that generates a secret normally decides it in Capture and keeps
// it in Desired (the 2FA secrets do). Here that would leave the export key's private half and
// its passphrase in the journal for good: the admin is told to move them off the server, and
// a copy left in /var/lib/emrkit/journal.json would quietly undo that advice (anyone who gets
// root could then read every export). Capture may not write anything else, and the journal
// cannot be edited by a step once Apply is done.
//
// So Desired holds no secret. The secret files are generated in Apply, and what makes the
// resumed run converge is a root-only manifest (sha256 of each file, and the nonce journaled
// in Desired) that Apply writes before the files themselves:
//
//   - crash before the manifest: nothing was written; the resumed Apply generates afresh.
//   - crash after the manifest, before or between the files: the manifest carries this
//     entry's nonce, so the files on disk are this attempt's and nobody has used them yet (the
//     key is imported, and the properties changed, only by later steps). Apply generates a
//     new set and overwrites them. A different key than the one first drawn is harmless:
//     nothing outside this step ever saw it.
//   - crash after the files: Check finds them matching the manifest; the runner finishes.
//
// Undo and drift compare each file with the manifest's hash (compare-and-swap), and a file
// whose hash belongs to an earlier manifest (another nonce) is never overwritten: it may be
// the only copy of a key that earlier exports were encrypted to. The secret halves may be
// moved off the server, as the admin is told; their absence is not drift.
package pgp
