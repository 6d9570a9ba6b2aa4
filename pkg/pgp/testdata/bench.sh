#!/bin/sh
# Prints the numbers of the PGP export report: key generation per algorithm, `pgp selftest`
# per mode, and decryption of a 100 MB export by emrkit and by `gpg -d` in the same run.
# Run as root from the repository (it creates and removes a throwaway system user); needs
# gnupg and pgpgpg (scripts/deps.sh).
set -eu
cd "$(dirname "$0")/../../.."
exec go test -count=1 -run '^$' -bench . -benchtime "${BENCHTIME:-3x}" ./pkg/pgp/
