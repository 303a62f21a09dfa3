package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestOpenFile(t *testing.T) {
	tests := []struct {
		name  string
		path  func(dir string) string
		lines int
	}{
		{name: "new file in a new directory", path: func(d string) string { return filepath.Join(d, "logs", "nested", "access.log") }, lines: 3},
		{name: "existing file is appended to", path: func(d string) string {
			p := filepath.Join(d, "access.log")
			if err := os.WriteFile(p, []byte("{\"old\":true}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, lines: 3}, // the unchained file is moved aside (.legacy-*)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t.TempDir())
			logger, closer, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			for i := 0; i < 3; i++ {
				logger.Info("decision", zap.Int("n", i), zap.String("segment", "il3"), zap.Duration("duration", 1500*time.Microsecond))
			}
			if err := closer.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := closer.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 && !strings.HasSuffix(tc.name, "appended to") {
				t.Errorf("mode = %v, want 0600", st.Mode().Perm())
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			n := 0
			for sc.Scan() {
				n++
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("line %d is not JSON: %v: %s", n, err, sc.Text())
				}
				if _, old := m["old"]; old {
					continue
				}
				ts, _ := m["time"].(string)
				tm, err := time.Parse(TimeLayout, ts)
				if err != nil || !strings.HasSuffix(ts, "Z") || tm.Location() != time.UTC {
					t.Errorf("time %q is not ISO 8601 UTC: %v", ts, err)
				}
				if _, ok := m["caller"]; ok {
					t.Errorf("line has a caller field: %s", sc.Text())
				}
				if m["msg"] != "decision" || m["segment"] != "il3" {
					t.Errorf("line lost its fields: %s", sc.Text())
				}
				if d, ok := m["duration"].(float64); !ok || d != 1 {
					t.Errorf("duration = %v, want 1 (whole milliseconds)", m["duration"])
				}
			}
			if n != tc.lines {
				t.Errorf("lines = %d, want %d", n, tc.lines)
			}
		})
	}
}

func TestOpenNoSampling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	logger, closer, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// zap's production sampler keeps the first 100 identical entries per
	// second: write more than that.
	const n = 1000
	for i := 0; i < n; i++ {
		logger.Info("decision")
	}
	closer.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "\n"); got != n {
		t.Errorf("lines = %d, want %d (an access log must never sample)", got, n)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "empty path", path: ""},
		{name: "directory under a file", path: filepath.Join(blocker, "access.log")},
		{name: "path is a directory", path: dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Open(tc.path); err == nil {
				t.Errorf("Open(%q) succeeded, want an error", tc.path)
			}
		})
	}
}

func TestOpenStdStreams(t *testing.T) {
	for _, p := range []string{Stdout, Stderr} {
		t.Run(p, func(t *testing.T) {
			logger, closer, err := Open(p)
			if err != nil || logger == nil {
				t.Fatalf("Open(%q) = %v, %v", p, logger, err)
			}
			if err := closer.Close(); err != nil {
				t.Errorf("Close: %v (syncing a terminal must not be an error)", err)
			}
		})
	}
}
