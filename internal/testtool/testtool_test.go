package testtool

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeTB records whether Require skipped or failed, without stopping the
// real test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = format
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = format
}

func TestRequire(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "nacd-fake-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		tool        string
		require, ci string
		wantPath    bool
		wantSkip    bool
		wantFail    bool
	}{
		{name: "present tool returns its path", tool: "nacd-fake-tool", wantPath: true},
		{name: "missing tool on a laptop skips", tool: "nacd-no-such-tool", wantSkip: true},
		{name: "missing tool with NACD_REQUIRE_TOOLS=1 fails", tool: "nacd-no-such-tool", require: "1", wantFail: true},
		{name: "missing tool with CI=true fails", tool: "nacd-no-such-tool", ci: "true", wantFail: true},
		{name: "missing tool with NACD_REQUIRE_TOOLS=0 skips", tool: "nacd-no-such-tool", require: "0", wantSkip: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", dir)
			old := sbinDirs
			sbinDirs = nil
			defer func() { sbinDirs = old }()
			t.Setenv(RequireEnv, tc.require)
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			got := Require(f, tc.tool)
			if tc.wantPath && got != tool {
				t.Errorf("Require = %q, want %q", got, tool)
			}
			if f.skipped != tc.wantSkip || f.failed != tc.wantFail {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v", f.skipped, f.failed, tc.wantSkip, tc.wantFail)
			}
		})
	}
}

func TestPackage(t *testing.T) {
	if got := Package("eapol_test"); got != "eapoltest" {
		t.Errorf("Package(eapol_test) = %q, want eapoltest", got)
	}
}

func TestLookSbin(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nacd-sbin-tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	old := sbinDirs
	sbinDirs = []string{dir}
	defer func() { sbinDirs = old }()
	got, err := Look("nacd-sbin-tool")
	if err != nil || got != filepath.Join(dir, "nacd-sbin-tool") {
		t.Errorf("Look = %q, %v; want the tool from the sbin directory", got, err)
	}
	if _, err := Look("nacd-no-such-tool"); err == nil {
		t.Error("Look found a tool that does not exist")
	}
}
