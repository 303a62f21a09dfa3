// Package testtool finds the external tools that interop tests run
// (eapol_test, radclient, openssl, ...). It is test plumbing only: nothing in
// a production path may import it.
//
// A missing tool skips the test on a developer machine, with a loud message
// saying how to install it, and FAILS the test in CI (CI=true) or when
// NACD_REQUIRE_TOOLS=1, so that CI can never go green by skipping interop.
package testtool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns a missing tool into a
// test failure when set to 1 (or true).
const RequireEnv = "NACD_REQUIRE_TOOLS"

// packages maps a tool to the Debian package that provides it.
var packages = map[string]string{
	"eapol_test":       "eapoltest",
	"radclient":        "freeradius-utils",
	"radtest":          "freeradius-utils",
	"radiusd":          "freeradius",
	"freeradius":       "freeradius",
	"openssl":          "openssl",
	"radsecproxy":      "radsecproxy",
	"psql":             "postgresql-client",
	"python3":          "python3",
	"aiosmtpd":         "python3-aiosmtpd",
	"curl":             "curl",
	"promtool":         "prometheus",
	"systemd-analyze":  "systemd",
	"systemd-sysusers": "systemd",
	"systemd-tmpfiles": "systemd",
}

// Required reports whether a missing tool must fail the test rather than
// skip it: NACD_REQUIRE_TOOLS=1 or CI=true.
func Required() bool {
	return truthy(os.Getenv(RequireEnv)) || truthy(os.Getenv("CI"))
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// Package returns the Debian package that provides tool, or "" when unknown.
func Package(tool string) string { return packages[tool] }

// sbinDirs are searched after PATH: daemons such as freeradius live in
// /usr/sbin, which a non-root user's PATH often lacks.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// Look returns the path of the named tool: from PATH, else from the sbin
// directories.
func Look(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if !strings.ContainsRune(name, '/') {
		for _, dir := range sbinDirs {
			if p, e := exec.LookPath(filepath.Join(dir, name)); e == nil {
				return p, nil
			}
		}
	}
	return "", err
}

// Require returns the absolute path of the named tool. When the tool is not
// on PATH (nor in an sbin directory) it fails the test (Fatalf) if Required() is true, and otherwise
// skips it (Skipf) with a loud message saying which tool is missing and how
// to install it.
func Require(tb testing.TB, name string) string {
	tb.Helper()
	path, err := Look(name)
	if err == nil {
		return path
	}
	install := "install it"
	if pkg := Package(name); pkg != "" {
		install = "install it with: sudo apt-get install -y " + pkg
	}
	if Required() {
		tb.Fatalf("REQUIRED TOOL MISSING: %q is not on PATH (%v); %s=1 or CI=true makes this a failure; %s", name, err, RequireEnv, install)
		return ""
	}
	tb.Skipf("\n"+
		"**********************************************************************\n"+
		"*** SKIPPED: %q is not installed, so this interop test did NOT run.\n"+
		"*** To run it, %s\n"+
		"*** (in CI, %s=1 turns this skip into a failure)\n"+
		"**********************************************************************",
		name, install, RequireEnv)
	return ""
}
