package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadtestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no bound", []string{"--secret", "x", "--cert", "c", "--key", "k", "--ca", "ca"}, "--count or --duration is required"},
		{"no secret", []string{"--count", "1", "--cert", "c", "--key", "k", "--ca", "ca"}, "--secret"},
		{"both secrets", []string{"--count", "1", "--secret", "x", "--secret-file", "f", "--cert", "c", "--key", "k", "--ca", "ca"}, "--secret"},
		{"key missing for a cert", []string{"--count", "1", "--secret", "x", "--cert", "c", "--cert", "d", "--key", "k", "--ca", "ca"}, "one --key"},
		{"no certificates", []string{"--count", "1", "--secret", "x", "--ca", "ca"}, "--personas"},
		{"no server verification choice", []string{"--count", "1", "--secret", "x", "--cert", "c", "--key", "k"}, "--insecure-skip-verify"},
		{"CA and insecure", []string{"--count", "1", "--secret", "x", "--cert", "c", "--key", "k", "--ca", "ca", "--insecure-skip-verify"}, "--insecure-skip-verify"},
		{"bad TLS version", []string{"--count", "1", "--secret", "x", "--cert", "c", "--key", "k", "--ca", "ca", "--tls", "1.1"}, "--tls"},
		{"unknown curve", []string{"--count", "1", "--secret", "x", "--cert", "c", "--key", "k", "--ca", "ca", "--curves", "x25519,kyber"}, "--curves"},
		{"positional argument", []string{"--count", "1", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"loadtest"}, tt.args...), &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want %d (stderr %q)", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
				t.Fatalf("stderr %q does not mention %q (stdout %q)", stderr.String(), tt.want, stdout.String())
			}
		})
	}
}

// TestLoadtestAgainstServe runs `nacd loadtest` against `nacd serve` in the
// same process: the bootstrap PKI's demo devices as personas, the bootstrap
// CA to verify the server, JSON summary, exit 0.
func TestLoadtestAgainstServe(t *testing.T) {
	dir := t.TempDir()
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	secret := "loadtest-cli-secret-0123456789"
	cfg := strings.NewReplacer("127.0.0.1:1812 ", addr+" ", "127.0.0.1:1813 ", "127.0.0.1:0 ", "127.0.0.1:9812 ", "127.0.0.1:0 ", "127.0.0.1:9443 ", "127.0.0.1:0 ",
		"secret_file: ./nacd-data/radius-secret", fmt.Sprintf("secret: %q", secret),
		"data_dir: ./nacd-data", "data_dir: "+filepath.Join(dir, "data"),
		"access_log: stdout", "access_log: "+filepath.Join(dir, "access.log"))
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.Replace(string(example))), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveOut, serveErr bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		runContext(ctx, []string{"serve", "--config", cfgFile}, &serveOut, &serveErr)
	}()
	defer func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("serve stderr: %s", serveErr.String())
		}
	}()
	data := filepath.Join(dir, "data")
	args := []string{"loadtest", "--server", addr, "--secret", secret, "--personas", filepath.Join(data, "demo"),
		"--ca", filepath.Join(data, "pki", "ca.crt"), "--count", "12", "--concurrency", "3", "--json", "--curves", "x25519, p256"}
	var stdout, stderr bytes.Buffer
	code := -1
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(data, "demo")); err != nil {
			continue // serve has not bootstrapped yet
		}
		stdout.Reset()
		stderr.Reset()
		if code = run(args, &stdout, &stderr); code == exitOK {
			break
		}
	}
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	var sum struct {
		Accepts, Errors, Timeouts int
		VLANs                     map[string]int `json:"vlans"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("JSON summary: %v\n%s", err, stdout.String())
	}
	// Demo devices: staff-laptop (council-managed staff, il3) -> il3 310,
	// member-tablet (personal member) -> general 110 at Wallfields.
	if sum.Accepts != 12 || sum.Errors != 0 || sum.Timeouts != 0 || sum.VLANs["310"] != 6 || sum.VLANs["110"] != 6 {
		t.Fatalf("summary %+v\n%s", sum, stdout.String())
	}
}
