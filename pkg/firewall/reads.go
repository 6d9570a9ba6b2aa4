package firewall

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// readCache keeps what ufw's read-only commands (status, show added) printed until ufw is
// asked to do anything else. A run asks them again for every step, and each start of ufw
// costs a tenth of a second of Python: most of a no-op configure. Only emrkit's own ufw calls,
// which all go through UFW.Run and clear it, change the answers within a run.
//
// With a file, the answers also outlive the run, kept beside a fingerprint of everything ufw
// derives them from: its rule files, its configuration, the program itself, and the kernel's
// filter tables (`iptables -S`, `ip6tables -S`: whether ufw's chains are loaded is what
// `ufw status` reports as active). A later run whose fingerprint is the same gets the same
// answers without starting ufw; any change — an admin's `ufw allow`, `ufw disable`, a flushed
// table, an upgraded ufw — is a different fingerprint, and ufw is asked again.
type readCache struct {
	mu  sync.Mutex
	out map[string]string
	fp  string // the sources' fingerprint while out is valid ("": not computed)
	// file keeps the answers across runs ("": not kept); fingerprint computes the sources.
	file        string
	fingerprint func(context.Context) (string, error)
}

// keptReads is the file's content.
type keptReads struct {
	Fingerprint string            `json:"fingerprint"`
	Out         map[string]string `json:"out"`
}

func (c *readCache) run(ctx context.Context, args []string, run func(context.Context, ...string) (string, error)) (string, error) {
	key := strings.Join(args, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !readOnly[key] {
		c.out, c.fp = nil, ""
		return run(ctx, args...)
	}
	if out, ok := c.out[key]; ok {
		return out, nil
	}
	var kept keptReads
	if c.file != "" && c.fp == "" {
		c.fp, _ = c.fingerprint(ctx) // "" when the sources cannot be read: ufw is asked
	}
	fp := c.fp
	if fp != "" {
		kept = c.load()
		if out, ok := kept.Out[key]; ok && fp != "" && kept.Fingerprint == fp {
			c.remember(key, out)
			return out, nil
		}
	}
	out, err := run(ctx, args...)
	if err != nil {
		return out, err
	}
	c.remember(key, out)
	// Kept only when nothing changed while ufw ran, so the answer belongs to the fingerprint.
	if fp != "" {
		if after, _ := c.fingerprint(ctx); after != fp {
			c.fp = "" // ufw's sources changed meanwhile: nothing is kept
		} else {
			if kept.Fingerprint != fp {
				kept = keptReads{Fingerprint: fp}
			}
			if kept.Out == nil {
				kept.Out = map[string]string{}
			}
			kept.Out[key] = out
			c.save(kept)
		}
	}
	return out, nil
}

func (c *readCache) remember(key, out string) {
	if c.out == nil {
		c.out = map[string]string{}
	}
	c.out[key] = out
}

// load returns the kept answers; an unreadable or damaged file is as good as none.
func (c *readCache) load() keptReads {
	var k keptReads
	if data, err := fsutil.ReadFile(c.file, fsutil.TextLimit); err == nil {
		if json.Unmarshal(data, &k) != nil {
			return keptReads{}
		}
	}
	return k
}

// save keeps the answers; failing to is not an error (the next run asks ufw again).
func (c *readCache) save(k keptReads) {
	data, err := json.Marshal(k)
	if err == nil && os.MkdirAll(filepath.Dir(c.file), 0o700) == nil {
		_ = fsutil.WriteAtomic(c.file, data, 0o600, nil)
	}
}

// ReadsFile is the name of the file KeepReads keeps its answers in, in emrkit's state dir.
const ReadsFile = "ufw-reads.json"

// KeepReads returns the Env with a fresh read cache whose answers outlive the run in file
// (in emrkit's state dir): a run that finds ufw's sources as the last one left them does not
// start ufw at all.
func (e Env) KeepReads(file string) Env {
	e.UFW.reads = &readCache{file: file, fingerprint: e.ufwSources}
	return e
}

// ufwSources fingerprints everything `ufw status` and `ufw show added` derive from.
func (e Env) ufwSources(ctx context.Context) (string, error) {
	h := sha256.New()
	files := append([]string{e.DefaultsFile}, e.UserRules...)
	if len(e.UserRules) > 0 {
		files = append(files, filepath.Join(filepath.Dir(e.UserRules[0]), "ufw.conf"))
	}
	for _, f := range files {
		data, err := fsutil.ReadFile(f, fsutil.TextLimit)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	// The program: an upgraded ufw may print differently.
	for _, p := range []string{e.UFW.Path, e.UFWModules} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	}
	if len(e.IPTables) == 0 {
		return "", fmt.Errorf("no iptables to fingerprint the kernel's tables with")
	}
	for _, ipt := range e.IPTables {
		out, _, err := e.exec()(ctx, []string{ipt, "-S"}, toolEnv)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", ipt, len(out))
		h.Write(bytes.TrimSpace(out))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
