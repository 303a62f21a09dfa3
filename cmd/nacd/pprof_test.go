package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:6060", true},
		{"127.0.0.2:6060", true},
		{"[::1]:6060", true},
		{"localhost:0", true},
		{"[::ffff:127.0.0.1]:6060", true},
		{":6060", false}, // every interface
		{"0.0.0.0:6060", false},
		{"[::]:6060", false},
		{"10.1.2.3:6060", false},
		{"example.org:6060", false},
		{"127.0.0.1", false}, // no port
		{"", false},
	} {
		err := checkLoopback(c.addr)
		if (err == nil) != c.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", c.addr, err, c.ok)
		}
	}
}

// TestServePprofRefusesNonLoopback: a usage error, before anything starts.
func TestServePprofRefusesNonLoopback(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cmdServe(context.Background(), []string{"--pprof", "0.0.0.0:6060"}, &stdout, &stderr, func(readyInfo) {
		t.Error("serve started")
	})
	if code != exitUsage || !strings.Contains(stderr.String(), "only a loopback address") {
		t.Fatalf("exit %d, stderr %q; want usage error naming loopback", code, stderr.String())
	}
}

// TestServePprof: with --pprof the profiles are served on the loopback
// listener, and only there (not on the metrics listener).
func TestServePprof(t *testing.T) {
	s := newTestSetup(t)
	info, _ := startServeArgs(t, "--config", s.cfgPath, "--pprof", "127.0.0.1:0")
	if info.Pprof == "" || !strings.HasPrefix(info.Pprof, "127.0.0.1:") {
		t.Fatalf("pprof address %q", info.Pprof)
	}
	get := func(url string) (int, string) {
		t.Helper()
		code, body := httpGet(t, url)
		return code, string(body)
	}
	if code, body := get("http://" + info.Pprof + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof index: %d %.200q", code, body)
	}
	if code, body := get("http://" + info.Pprof + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile: %d %.200q", code, body)
	}
	if code, _ := get("http://" + info.Metrics + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("metrics listener answers /debug/pprof/ with %d, want 404", code)
	}
}

// TestServeWithoutPprof: no profiling listener by default.
func TestServeWithoutPprof(t *testing.T) {
	s := newTestSetup(t)
	info, _ := startServe(t, s.cfgPath)
	if info.Pprof != "" {
		t.Fatalf("pprof listening on %s without --pprof", info.Pprof)
	}
}
