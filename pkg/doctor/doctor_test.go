package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/plan"
)

func TestListeningReadsTheKernelsTables(t *testing.T) {
	dir := t.TempDir()
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1 1
   1: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 2 1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0F02000A:01BB 0F02000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1
`
	tcp6 := `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A
   2: 0000000000000000FFFF00000100007F:2382 00000000000000000000000000000000:0000 0A
`
	os.WriteFile(filepath.Join(dir, "tcp"), []byte(tcp), 0o644)
	os.WriteFile(filepath.Join(dir, "tcp6"), []byte(tcp6), 0o644)
	got, err := listening(dir)
	// 3306 on 0.0.0.0 and 22 count; 3306 on 127.0.0.1, ::1:8080 and ::ffff:127.0.0.1:9090
	// are loopback; 443 is an established connection, not a listener; [::]:8080 counts.
	if err != nil || !slices.Equal(got, []int{22, 3306, 8080}) {
		t.Fatalf("listening: %v %v", got, err)
	}
}

func TestVerdictFollowsUFWsOrder(t *testing.T) {
	rules, err := firewall.ParseAdded("Added user rules (see 'ufw status' for running firewall):\n" +
		"ufw allow 22/tcp comment 'emrkit'\nufw deny proto tcp from any to any port 3306 comment 'emrkit'\n" +
		"ufw allow from 10.0.0.0/8 to any port 3306 proto tcp\nufw allow 6000:6007/tcp\nufw allow 80,443/tcp\n")
	if err != nil {
		t.Fatal(err)
	}
	v := firewall.View{Active: true, Incoming: "deny", Rules: rules}
	for port, want := range map[int]string{22: "allow", 3306: "deny", 6003: "allow", 443: "allow", 8080: "deny"} {
		if got, _ := v.Verdict(port); got != want {
			t.Errorf("port %d: %s, want %s", port, got, want)
		}
	}
	if got, rule := v.Verdict(8080); rule != "" || got != "deny" {
		t.Errorf("8080 falls to the default policy: %s %q", got, rule)
	}
	if got, _ := (firewall.View{Active: false, Incoming: "deny"}).Verdict(3306); got != "allow" {
		t.Error("an inactive firewall blocks")
	}
}

// TestReportFollowsTheSchema: a report of a host with nothing on it validates against the
// schema the package ships, and so does every status.
func TestReportFollowsTheSchema(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Database.Socket = filepath.Join(dir, "none.sock")
	cfg.Paths = config.Paths{StateDir: dir + "/state", BackupDir: dir + "/backups", CronFile: dir + "/emrkit"}
	h := plan.DefaultHost()
	h.PropertiesCandidates = nil
	h.Firewall.UFW.Path = filepath.Join(dir, "no-ufw")
	var buf bytes.Buffer
	r := Run(context.Background(), Env{Config: cfg, Host: h, Version: "0.5.0-1", OpenEMRURL: "http://127.0.0.1:1/openemr"}, "oscar")
	if err := r.JSON(&buf); err != nil {
		t.Fatal(err)
	}
	schema, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("doctor.schema.json", schema); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("doctor.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(buf.Bytes())
	doc, err := jsonschema.UnmarshalJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("report does not follow the schema: %v", err)
	}
	// The schema refuses what is not a report.
	bad, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(`{"profile":"oscar","checks":[{"id":"x","status":"OK"}]}`)))
	if sch.Validate(bad) == nil {
		t.Fatal("the schema accepts a broken report")
	}
	var back Report
	json.Unmarshal(out, &back)
	if back.Failed == 0 || !r.Failing() || back.Passed+back.Failed != back.Applicable {
		t.Fatalf("an empty host: %+v", back)
	}
}

func TestAlertsCheckFindsTheMailProgram(t *testing.T) {
	dir := t.TempDir()
	mta := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(mta, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		alerts config.Alerts
		status Status
		want   string
	}{
		{config.Alerts{Sendmail: mta}, Pass, mta + " mails root"},
		{config.Alerts{Sendmail: mta, MailTo: "off"}, Warn, "alerts.mail_to is off"},
		{config.Alerts{Sendmail: filepath.Join(dir, "none")}, Warn, "is not there"},
		{config.Alerts{Sendmail: dir}, Warn, "is not there"},
	} {
		cfg := config.Default()
		cfg.Alerts = c.alerts
		got := (&host{env: Env{Config: cfg}}).alerts()
		if len(got) != 1 || got[0].Status != c.status || !strings.Contains(got[0].Finding, c.want) {
			t.Errorf("%+v: %+v, want %s %q", c.alerts, got, c.status, c.want)
		}
	}
}
