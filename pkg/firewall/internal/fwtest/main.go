// Command fwtest is `emrkit firewall` for the namespace integration test only: the real
// command code with the ufw path and SSH probing adjustable, and a guard that refuses to run
// anywhere but in a network namespace other than the test's, with /etc/ufw a private mount.
//
//	fwtest --config FILE [--ufw PATH] [--no-ancestors] apply|status|revert [--dry-run]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	cmdfw "github.com/emrkit/emrkit/pkg/cmd/firewall"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/firewall"
)

// HostNetEnv names the variable carrying the test's own network namespace
// (readlink /proc/self/ns/net), which fwtest must not be in.
const HostNetEnv = "EMRKIT_FWTEST_HOST_NETNS"

func main() {
	fs := flag.NewFlagSet("fwtest", flag.ExitOnError)
	cfgPath := fs.String("config", "", "emrkit configuration file")
	ufw := fs.String("ufw", "/usr/sbin/ufw", "ufw program")
	noAncestors := fs.Bool("no-ancestors", false, "do not read the process tree for an SSH session")
	fs.Parse(os.Args[1:])
	if err := guard(); err != nil {
		fmt.Fprintf(os.Stderr, "fwtest: refusing to run: %v\n", err)
		os.Exit(99)
	}
	env := firewall.DefaultEnv()
	env.UFW.Path = *ufw
	if *noAncestors {
		env.ProcRoot = ""
	}
	f := &cmdutil.Factory{Version: firewall.Since, Out: os.Stdout, Err: os.Stderr, ConfigPath: *cfgPath, ConfigSet: true}
	cmd := cmdfw.NewWith(f, env)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(fs.Args())
	err := cmd.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		fmt.Fprintf(os.Stderr, "emrkit: %s\n", err)
	}
	os.Exit(cmdutil.ExitCode(err))
}

// guard makes sure the firewall this process changes is not the test host's.
func guard() error {
	host := os.Getenv(HostNetEnv)
	if host == "" {
		return fmt.Errorf("%s is not set", HostNetEnv)
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	if self == host {
		return fmt.Errorf("still in the host's network namespace %s", self)
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer mounts.Close()
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 && f[4] == "/etc/ufw" {
			return nil
		}
	}
	return fmt.Errorf("/etc/ufw is not a private mount")
}
