package mariadb

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/emrkit/emrkit/pkg/config"
)

// Command returns program (mariadb, mariadb-dump, or a path to one) with args, set up to reach
// db's server as db says. Its option file — the password with it — is not a file on disk: it
// is written into an anonymous in-memory file (memfd) that the client inherits as descriptor 3
// and reads as --defaults-extra-file=/dev/fd/3. Nothing names it in any directory, nothing is
// on the command line, and when either process dies, even by SIGKILL, the kernel frees it:
// no run, however it ends, leaves the password behind. Call done once the command has ended
// (or failed to start); it closes emrkit's descriptor.
func Command(ctx context.Context, db config.Database, program string, args ...string) (cmd *exec.Cmd, done func(), err error) {
	text, err := OptionText(db)
	if err != nil {
		return nil, nil, err
	}
	f, err := optionFD(text)
	if err != nil {
		return nil, nil, fmt.Errorf("mariadb: option file for %s: %w", program, err)
	}
	// --defaults-extra-file must be the first argument; ExtraFiles[0] is the child's fd 3.
	cmd = exec.CommandContext(ctx, program, append([]string{"--defaults-extra-file=/dev/fd/3"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	return cmd, func() { f.Close() }, nil
}
