package testtool

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// requireCall finds testtool.Require(t, "tool") calls.
var requireCall = regexp.MustCompile(`testtool\.Require\(\s*\w+\s*,\s*"([^"]+)"\s*\)`)

// TestCIInstallsEveryRequiredTool keeps the tool lists honest: every tool a
// test in the repository requires must map to a Debian package, and that
// package must be installed by .ci/run and named in the README's apt-get
// line. Otherwise CI (NACD_REQUIRE_TOOLS=1) fails, or a developer following
// the README only sees skips.
func TestCIInstallsEveryRequiredTool(t *testing.T) {
	root := filepath.Join("..", "..")
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatalf("read .ci/run: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatalf("read README.md: %v", err)
	}
	ciInstall := aptInstallLine(string(ci))
	readmeInstall := aptInstallLine(string(readme))
	if ciInstall == nil || readmeInstall == nil {
		t.Fatalf("no apt-get install line in .ci/run (%v) or README.md (%v)", ciInstall != nil, readmeInstall != nil)
	}

	tools := map[string]string{} // tool -> first file requiring it
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "testdata" || name == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasPrefix(path, filepath.Join(root, "internal", "testtool")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range requireCall.FindAllStringSubmatch(string(b), -1) {
			if _, ok := tools[m[1]]; !ok {
				tools[m[1]] = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tools) == 0 {
		t.Fatal("found no testtool.Require calls: the scan is broken")
	}
	for tool, file := range tools {
		pkg := Package(tool)
		if pkg == "" {
			t.Errorf("%s requires %q, which has no Debian package in testtool's map", file, tool)
			continue
		}
		if !ciInstall[pkg] {
			t.Errorf("%s requires %q (package %s), which .ci/run does not install", file, tool, pkg)
		}
		if !readmeInstall[pkg] {
			t.Errorf("%s requires %q (package %s), which the README's apt-get line does not install", file, tool, pkg)
		}
	}
}

// aptInstallLine returns the package names of the first "apt-get install"
// line in text, or nil.
func aptInstallLine(text string) map[string]bool {
	for _, line := range strings.Split(text, "\n") {
		_, rest, ok := strings.Cut(line, "apt-get install")
		if !ok {
			continue
		}
		pkgs := map[string]bool{}
		for _, f := range strings.Fields(rest) {
			if !strings.HasPrefix(f, "-") {
				pkgs[f] = true
			}
		}
		return pkgs
	}
	return nil
}
