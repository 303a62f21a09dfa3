package eapoltest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBinary writes a shell script standing in for eapol_test.
func fakeBinary(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake_eapol_test")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunIsBoundedAndNeverPassesSilently(t *testing.T) {
	capture, err := os.ReadFile(filepath.Join("testdata", "freeradius-accept-tls12.txt"))
	if err != nil {
		t.Fatal(err)
	}
	capFile := filepath.Join(t.TempDir(), "capture.txt")
	if err := os.WriteFile(capFile, capture, 0o644); err != nil {
		t.Fatal(err)
	}
	base := Options{Server: "127.0.0.1:1812", Secret: "s", Timeout: time.Second}
	tests := []struct {
		name    string
		script  string
		ctxTO   time.Duration
		wantErr error // nil: a successful parse is expected
		success bool
	}{
		{name: "hangs past its own -t: killed by the context", script: "exec sleep 60", ctxTO: 500 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "hangs with a child holding stdout: killed", script: "sleep 60 & sleep 60", ctxTO: 500 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "prints nothing", script: "exit 0", wantErr: ErrUnparsable},
		{name: "exits 0 but says FAILURE", script: "echo FAILURE; exit 0", wantErr: ErrUnparsable},
		{name: "says SUCCESS without an exchange", script: "echo SUCCESS; exit 0", wantErr: ErrUnparsable},
		{name: "real capture replayed with exit 0", script: "cat " + capFile + "; exit 0", success: true},
		{name: "real capture replayed with exit 1", script: "cat " + capFile + "; exit 1", wantErr: ErrUnparsable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.Binary = fakeBinary(t, tc.script)
			ctx := context.Background()
			if tc.ctxTO > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTO)
				defer cancel()
			}
			r, err := Run(ctx, o)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Run err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.Success != tc.success {
				t.Errorf("Success = %v, want %v", r.Success, tc.success)
			}
		})
	}
}

func TestRunPassesOptionsToEapolTest(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	confCopy := filepath.Join(dir, "conf")
	// Record the arguments and the config file, then fail like eapol_test.
	bin := fakeBinary(t, `echo "$@" > `+argsFile+`; cp "$2" `+confCopy+`; echo FAILURE; exit 1`)
	r, err := Run(context.Background(), Options{
		Binary: bin, Server: "127.0.0.1:18120", Secret: "sekrit", ClientIP: "127.0.0.2",
		Identity: "dev-1", TLSVersion: "1.3", FragmentSize: 500, Timeout: 3 * time.Second,
		Attributes: []Attribute{CalledStationID("AA-BB-CC-DD-EE-FF", "CouncilWiFi")},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Success || r.ExitCode != 1 {
		t.Errorf("Success=%v ExitCode=%d, want false 1", r.Success, r.ExitCode)
	}
	args, _ := os.ReadFile(argsFile)
	conf, _ := os.ReadFile(confCopy)
	for _, w := range []string{"-a 127.0.0.1", "-p 18120", "-s sekrit", "-A 127.0.0.2", "-t 3", "-N30:s:AA-BB-CC-DD-EE-FF:CouncilWiFi"} {
		if !strings.Contains(string(args), w) {
			t.Errorf("args %q lack %q", args, w)
		}
	}
	for _, w := range []string{`identity="dev-1"`, "fragment_size=500", "tls_disable_tlsv1_2=1"} {
		if !strings.Contains(string(conf), w) {
			t.Errorf("config lacks %q:\n%s", w, conf)
		}
	}
	if _, err := Run(context.Background(), Options{Binary: bin, Server: "127.0.0.1:1", Secret: "s", ClientIP: "10.0.0.1"}); err == nil {
		t.Error("non-loopback ClientIP accepted")
	}
}
