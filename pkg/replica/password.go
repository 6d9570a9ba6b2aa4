package replica

import (
	"fmt"
	"regexp"

	"github.com/emrkit/emrkit/pkg/secretfile"
)

// passwordRE is what emrkit writes and accepts: it may stand in an SQL string literal and
// in CHANGE MASTER as is.
var passwordRE = regexp.MustCompile(`^[A-Za-z0-9]{16,128}$`)

// readPassword is secretfile.Read, refusing a password that could not stand in CHANGE
// MASTER's string literal as is.
func readPassword(path string) (string, bool, error) {
	pw, ok, err := secretfile.Read(path)
	if err != nil || !ok {
		return "", ok, err
	}
	if !passwordRE.MatchString(pw) {
		return "", false, fmt.Errorf("password file %s does not hold a password emrkit wrote (16-128 letters and digits); remove it and run emrkit apply", path)
	}
	return pw, true, nil
}

// ensurePassword is secretfile.Ensure with readPassword's check.
func ensurePassword(path string) (string, error) {
	if _, err := secretfile.Ensure(path); err != nil {
		return "", err
	}
	pw, _, err := readPassword(path)
	return pw, err
}
