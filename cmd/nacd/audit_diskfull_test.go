package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herts-council/nacd/internal/audit"
	"github.com/herts-council/nacd/radius/loadtest"
)

// TestServeAuditDiskFull: serve with its access log on a 64 KiB tmpfs
// (root only; internal/audit's TestDiskFull covers the policy without
// root). With the default policy, while the disk is full an il3 device is
// rejected and a general one accepted, /readyz fails on audit and
// nacd_audit_write_errors_total counts; after space frees the il3 device is
// accepted again, and after shutdown the log verifies and holds every
// decision.
func TestServeAuditDiskFull(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	s := newTestSetup(t)
	logPath := filepath.Join(mnt, "access.log")
	editConfig(t, s, func(c string) string {
		return strings.Replace(c, "  access_log: "+quote(s.accessLog), "  access_log: "+quote(logPath), 1)
	})
	info, stop := startServe(t, s.cfgPath)

	auth := func(device string) (accepts, rejects int64) {
		t.Helper()
		f := s.devices[device]
		id, err := loadtest.LoadIdentity(f.Cert, f.Key, f.Chain)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := loadtest.Run(context.Background(), loadtest.Config{Server: info.RADIUSAuth, Secret: []byte(testSecret),
			Identities: []loadtest.Identity{id}, InsecureSkipVerify: true, Count: 1, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		return sum.Accepts, sum.Rejects
	}
	if a, _ := auth("staff-laptop"); a != 1 {
		t.Fatal("il3 device not accepted with a healthy log")
	}

	// Fill the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 512)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	// The log's last page may take a decision or two before it fails.
	failing := func() bool {
		_, body := httpGet(t, "http://"+info.Metrics+readyzPath)
		return bytes.Contains(body, []byte(`"failed":["audit"]`))
	}
	var decisions int
	for i := 0; !failing(); i++ {
		if i == 30 {
			t.Fatal("the access log never failed on a full disk")
		}
		auth("member-tablet")
		decisions++
	}
	if a, r := auth("staff-laptop"); a != 0 || r != 1 {
		t.Errorf("il3 while the log fails: %d accepts %d rejects, want a reject (fail_closed_il3)", a, r)
	}
	if a, _ := auth("member-tablet"); a != 1 {
		t.Error("general device rejected while the log fails; the default policy keeps serving non-il3")
	}
	samples, _ := scrapeSamples(t, info.Metrics)
	if samples["nacd_audit_write_errors_total{}"] < 1 || samples["nacd_audit_queued_records{}"] < 2 {
		t.Errorf("write errors %v queued %v, want >= 1 and >= 2", samples["nacd_audit_write_errors_total{}"], samples["nacd_audit_queued_records{}"])
	}
	const auditReject = `nacd_radius_decisions_total{reason="audit-log-unavailable",result="reject",segment="reject",site="Wallfields"}`
	if samples[auditReject] != 1 {
		t.Errorf("%s = %v, want 1", auditReject, samples[auditReject])
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if a, _ := auth("staff-laptop"); a != 1 {
		t.Error("il3 device not accepted after space freed")
	}
	code, body := httpGet(t, "http://"+info.Metrics+readyzPath)
	var rb healthBody
	json.Unmarshal(body, &rb)
	if code != http.StatusOK || rb.Checks["audit"] != "ok" {
		t.Errorf("/readyz after space freed: %d %s", code, body)
	}
	stop()

	pub := filepath.Join(s.dir, "data", audit.SealPubKeyFile)
	if code, out, _ := runCmd("audit", "verify", "--pubkey", pub, logPath); code != exitOK {
		t.Errorf("audit verify: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// Every decision is in the log: 1 + decisions + (reject, its accept
	// line is not written before the gate) + 1 + 1 accepts/rejects.
	accepts := bytes.Count(b, []byte(`"msg":"access-accept"`))
	rejects := bytes.Count(b, []byte(`"msg":"access-reject"`))
	if accepts != 1+decisions+1+1 || rejects != 1 {
		t.Errorf("log holds %d accepts %d rejects, want %d and 1", accepts, rejects, 3+decisions)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
