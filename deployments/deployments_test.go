package deployments_test

// These tests validate nacd's deployment material with the real tools where
// Debian has them (systemd-analyze, systemd-sysusers, systemd-tmpfiles,
// promtool, nacd itself) and check it against the code: the metric names and
// label values the rules and the dashboard use, the ports nacd listens on,
// the configuration the ConfigMap carries. A missing tool skips locally and
// fails in CI (internal/testtool).
//
// No docker engine runs here: the Dockerfile is checked statically and its
// build stage is reproduced with the same go build flags.

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/internal/testtool"
)

// repoRoot is the module root, relative to this package's directory (where
// go test runs).
const repoRoot = ".."

// ---------------------------------------------------------------------------
// The nacd binary, built as the Dockerfile builds it.

var (
	buildOnce sync.Once
	buildDir  string
	nacdBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// dockerBuild is the build command of the Dockerfile's build stage.
type dockerBuild struct {
	tags    string
	ldflags string
	pkg     string
}

// nacdBinary builds ./cmd/nacd once, with the Dockerfile's flags, and returns
// its path.
func nacdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		b, err := dockerBuildCommand()
		if err != nil {
			buildErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go not on PATH: %w", err)
			return
		}
		buildDir, err = os.MkdirTemp("", "nacd-deployments-")
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(buildDir, "nacd")
		ldflags := strings.ReplaceAll(b.ldflags, "${VERSION}", testVersion)
		cmd := exec.Command(goBin, "build", "-trimpath", "-tags", b.tags, "-ldflags", ldflags, "-o", out, b.pkg)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, msg)
			return
		}
		nacdBin = out
	})
	if buildErr != nil {
		t.Fatalf("build nacd as the Dockerfile does: %v", buildErr)
	}
	return nacdBin
}

// testVersion is the VERSION build argument the test passes.
const testVersion = "deployments-test"

// ---------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile returns the instructions of a Dockerfile: comments and
// blank lines dropped, continuation lines joined.
func parseDockerfile(text string) []instruction {
	var (
		out  []instruction
		cur  strings.Builder
		from int
	)
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue // also inside a continuation, as docker does
		}
		if cur.Len() == 0 {
			from = i + 1
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteString(" ")
		if cont {
			continue
		}
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: from})
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	reTags    = regexp.MustCompile(`-tags\s+"([^"]*)"`)
	reLdflags = regexp.MustCompile(`-ldflags\s+"([^"]*)"`)
	rePkg     = regexp.MustCompile(`\s(\./cmd/[a-z]+)\b`)
)

func dockerBuildCommand() (dockerBuild, error) {
	b, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		return dockerBuild{}, err
	}
	for _, in := range parseDockerfile(string(b)) {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		var d dockerBuild
		if m := reTags.FindStringSubmatch(in.args); m != nil {
			d.tags = m[1]
		}
		if m := reLdflags.FindStringSubmatch(in.args); m != nil {
			d.ldflags = m[1]
		}
		if m := rePkg.FindStringSubmatch(in.args); m != nil {
			d.pkg = m[1]
		}
		var missing []string
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
			if !strings.Contains(in.args, want) {
				missing = append(missing, want)
			}
		}
		if d.pkg == "" {
			missing = append(missing, "./cmd/nacd")
		}
		if len(missing) > 0 {
			return d, fmt.Errorf("Dockerfile line %d: go build lacks %v", in.line, missing)
		}
		return d, nil
	}
	return dockerBuild{}, errors.New("Dockerfile: no RUN ... go build")
}

type stage struct {
	image, name string
	ins         []instruction
}

func dockerStages(t *testing.T, ins []instruction) []stage {
	t.Helper()
	globalArgs := map[string]string{}
	var stages []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var s stage
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				t.Fatalf("Dockerfile line %d: FROM without an image", in.line)
			}
			s.image = os.Expand(f[0], func(k string) string { return globalArgs[k] })
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				k, v, _ := strings.Cut(in.args, "=")
				globalArgs[k] = v
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(readFile(t, "container/Dockerfile"))
	stages := dockerStages(t, ins)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	t.Run("build stage is golang 1.26", func(t *testing.T) {
		if !strings.HasPrefix(build.image, "golang:1.26") {
			t.Errorf("build stage FROM %q, want golang:1.26...", build.image)
		}
	})
	t.Run("final stage is distroless static or scratch", func(t *testing.T) {
		if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
			t.Errorf("final FROM %q, want gcr.io/distroless/static... or scratch", final.image)
		}
	})
	t.Run("final stage runs as a non-root numeric user", func(t *testing.T) {
		var user string
		for _, in := range final.ins {
			if in.cmd == "USER" {
				user = in.args
			}
		}
		uid, _, _ := strings.Cut(user, ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("final stage USER %q: want a numeric non-zero UID (Kubernetes runAsNonRoot checks it)", user)
		}
	})
	t.Run("no ADD, no remote sources", func(t *testing.T) {
		for _, in := range ins {
			if in.cmd == "ADD" {
				t.Errorf("line %d: ADD %s: use COPY (ADD fetches URLs and unpacks archives)", in.line, in.args)
			}
			if (in.cmd == "COPY" || in.cmd == "ADD") && regexp.MustCompile(`https?://`).MatchString(in.args) {
				t.Errorf("line %d: %s from a URL", in.line, in.cmd)
			}
		}
	})
	t.Run("COPY --from names a build stage", func(t *testing.T) {
		names := map[string]bool{}
		for _, s := range stages[:len(stages)-1] {
			names[s.name] = true
		}
		for _, in := range final.ins {
			for _, f := range strings.Fields(in.args) {
				if from, ok := strings.CutPrefix(f, "--from="); ok && in.cmd == "COPY" && !names[from] {
					t.Errorf("line %d: COPY --from=%s: no such stage", in.line, from)
				}
			}
		}
	})

	var expose []string
	var volumes, entrypoint, cmd string
	for _, in := range final.ins {
		switch in.cmd {
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "VOLUME":
			volumes += in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "RUN":
			t.Errorf("line %d: RUN in the final stage: distroless has no shell", in.line)
		}
	}
	t.Run("ports exposed", func(t *testing.T) {
		for _, p := range []string{"1812/udp", "1813/udp", "2083/tcp", "9812/tcp"} {
			if !slices.Contains(expose, p) {
				t.Errorf("EXPOSE lacks %s (have %v)", p, expose)
			}
		}
	})
	t.Run("data dir is a volume and the default data dir", func(t *testing.T) {
		var vs []string
		if err := json.Unmarshal([]byte(volumes), &vs); err != nil || !slices.Contains(vs, "/var/lib/nacd") {
			t.Errorf("VOLUME %s: want the JSON form with /var/lib/nacd", volumes)
		}
		var c []string
		if err := json.Unmarshal([]byte(cmd), &c); err != nil {
			t.Fatalf("CMD %s: want the exec (JSON) form: %v", cmd, err)
		}
		if i := slices.Index(c, "--data-dir"); i < 0 || i+1 >= len(c) || c[i+1] != "/var/lib/nacd" {
			t.Errorf("CMD %v: want --data-dir /var/lib/nacd", c)
		}
		var e []string
		if err := json.Unmarshal([]byte(entrypoint), &e); err != nil || len(e) != 1 || e[0] != "/usr/local/bin/nacd" {
			t.Errorf("ENTRYPOINT %s: want [\"/usr/local/bin/nacd\"] (exec form: nacd is PID 1 and gets SIGTERM)", entrypoint)
		}
	})
	t.Run("build flags", func(t *testing.T) {
		b, err := dockerBuildCommand()
		if err != nil {
			t.Fatal(err)
		}
		wantTags := []string{"nobadger", "nobadgerv1", "nobadgerv2", "nomysql"}
		if got := strings.Fields(b.tags); !slices.Equal(got, wantTags) {
			t.Errorf("-tags %q, want %q", got, wantTags)
		}
		for _, f := range []string{"-s", "-w", "-X main.version=${VERSION}"} {
			if !strings.Contains(b.ldflags, f) {
				t.Errorf("-ldflags %q lacks %q", b.ldflags, f)
			}
		}
	})
}

// TestDockerBuildStage reproduces the image's go build (no docker engine
// here) and checks the result is what a distroless/static or scratch image
// can run: a static, stripped ELF that knows its version.
func TestDockerBuildStage(t *testing.T) {
	bin := nacdBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("nacd has an ELF interpreter: not a static binary")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("nacd needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("nacd has a symbol table: -ldflags -s did not apply")
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("nacd version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), testVersion) {
		t.Errorf("nacd version = %q, want it to carry %q (-X main.version)", out, testVersion)
	}
}

// dockerignore reports whether path (slash-separated, relative to the
// context root) is excluded by the patterns, with Docker's rules: a pattern
// matches the path or one of its parent directories, ** matches any number
// of directories, the last matching pattern wins, ! re-includes.
func dockerignored(patterns []string, path string) bool {
	ignored := false
	parts := strings.Split(path, "/")
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := globRegexp(p)
		for i := 1; i <= len(parts); i++ {
			if re.MatchString(strings.Join(parts[:i], "/")) {
				ignored = !neg
				break
			}
		}
	}
	return ignored
}

func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func TestDockerignoreKeepsTheSources(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(readFile(t, "container/Dockerfile.dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	// The matcher itself, on cases with a known answer.
	for _, c := range []struct {
		path string
		want bool
	}{
		{".git/config", true},
		{"nacd-data/pki/ca.key", true},
		{"cmd/nacd/nacd-data/x", true},
		{"radius/testdata/fuzz/FuzzPacket/abc", true},
		{"ca.pem", true},
		{"radius/server.go", false},
		{"configs/nacd.example.yaml", false},
	} {
		if got := dockerignored(patterns, c.path); got != c.want {
			t.Errorf("dockerignored(%q) = %v, want %v", c.path, got, c.want)
		}
	}

	// Every file the build of ./cmd/nacd reads must be in the context.
	cmd := exec.Command("go", "list", "-deps", "-json", "./cmd/nacd")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir        string
			GoFiles    []string
			EmbedFiles []string
			Module     *struct{ Main bool }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		if dockerignored(patterns, f) {
			t.Errorf("Dockerfile.dockerignore excludes %s, which the image build needs", f)
		}
	}
}

// ---------------------------------------------------------------------------
// systemd

// unitFile maps section -> key -> values (a key may repeat).
type unitFile map[string]map[string][]string

func parseUnit(text string) unitFile {
	u := unitFile{}
	sec := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = l[1 : len(l)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
		default:
			k, v, _ := strings.Cut(l, "=")
			u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// survivesSIGHUP runs `nacd serve` on loopback (the ConfigMap's nacd.yaml
// with 127.0.0.1:0 listeners), waits until it is ready, sends SIGHUP and
// then SIGTERM, and reports whether the process was ended by the SIGHUP.
// Linux delivers pending standard signals lowest number first, so an
// unhandled SIGHUP (1) always wins over SIGTERM (15): no timing involved.
func survivesSIGHUP(t *testing.T) bool {
	t.Helper()
	bin := nacdBinary(t)
	m := loadManifests(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for k := range labels(m.one(t, "Secret"), "stringData") {
		if err := os.WriteFile(filepath.Join(secrets, k), []byte("s3cret-"+k+"-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := str(m.one(t, "ConfigMap"), "data", "nacd.yaml")
	text = strings.ReplaceAll(text, "/etc/nacd/secrets/", secrets+"/")
	text = regexp.MustCompile(`(?m)^(\s+(radius_auth|radius_acct|metrics|pki):\s*)"?[0-9.]*:\d+"?`).ReplaceAllString(text, `${1}"127.0.0.1:0"`)
	cfg := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait for the "ready" log line (or the end of stderr: a failed start).
	ready := false
	var logText strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		logText.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `"msg":"ready"`) {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("nacd serve did not get ready:\n%s", logText.String())
	}
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stderr) // until nacd exits
		close(drained)
	}()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-drained // Wait only after the last read from the pipe
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGHUP {
			return false
		}
	}
	return true
}

// TestSystemdReload: ExecReload sends SIGHUP, and a SIGHUP that nacd does
// not handle ends it, which Restart=on-failure counts as a clean stop
// (systemctl reload would leave nacd stopped). So ExecReload may be enabled
// only when nacd survives SIGHUP.
func TestSystemdReload(t *testing.T) {
	u := parseUnit(readFile(t, "systemd/nacd.service"))
	reload := u["Service"]["ExecReload"]
	survives := survivesSIGHUP(t)
	t.Logf("nacd survives SIGHUP: %v; unit ExecReload=%v", survives, reload)
	if len(reload) > 0 && !survives {
		t.Errorf("ExecReload=%v, but SIGHUP ends `nacd serve`: systemctl reload would stop nacd", reload)
	}
	if len(reload) == 0 && survives {
		t.Logf("nacd handles SIGHUP now: enable ExecReload=/bin/kill -HUP $MAINPID in systemd/nacd.service")
	}
}

func TestSystemdUnitSettings(t *testing.T) {
	u := parseUnit(readFile(t, "systemd/nacd.service"))
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	for _, c := range []struct{ key, want string }{
		{"User", "nacd"},
		{"Group", "nacd"},
		{"AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
		{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"RestrictNamespaces", "yes"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallArchitectures", "native"},
		{"StateDirectory", "nacd"},
		{"StateDirectoryMode", "0700"},
		{"ConfigurationDirectory", "nacd"},
		{"LogsDirectory", "nacd"},
		{"UMask", "0077"},
		{"Restart", "on-failure"},
	} {
		if got := svc[c.key]; len(got) != 1 || got[0] != c.want {
			t.Errorf("%s=%v, want %s", c.key, got, c.want)
		}
	}
	if f := svc["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%v: want @system-service first", f)
	}
	if d := svc["DynamicUser"]; len(d) > 0 && d[0] != "no" {
		t.Errorf("DynamicUser=%v with a static User: pick one", d)
	}
	exec := strings.Join(svc["ExecStart"], " ")
	for _, want := range []string{"/usr/local/bin/nacd serve", "--config /etc/nacd/nacd.yaml", "--data-dir /var/lib/nacd"} {
		if !strings.Contains(exec, want) {
			t.Errorf("ExecStart=%q lacks %q (StateDirectory/ConfigurationDirectory paths)", exec, want)
		}
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("WantedBy=%v", got)
	}
}

// installedUnit writes the unit with ExecStart pointing at the test-built
// binary (systemd-analyze verify checks that the binary exists), after
// edit, into a temp dir.
func installedUnit(t *testing.T, edit func(string) string) string {
	t.Helper()
	text := strings.ReplaceAll(readFile(t, "systemd/nacd.service"), "/usr/local/bin/nacd", nacdBinary(t))
	path := filepath.Join(t.TempDir(), "nacd.service")
	if err := os.WriteFile(path, []byte(edit(text)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := testtool.Require(t, "systemd-analyze")
	for _, c := range []struct {
		name      string
		edit      func(string) string
		wantClean bool
	}{
		{"shipped unit", func(s string) string { return s }, true},
		// Controls: the harness must see a broken unit as broken.
		{"misspelt directive", func(s string) string {
			return strings.Replace(s, "\nProtectSystem=strict\n", "\nProtectSytem=strict\n", 1)
		}, false},
		{"bad value", func(s string) string {
			return strings.Replace(s, "\nRestart=on-failure\n", "\nRestart=sometimes\n", 1)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			unit := installedUnit(t, func(s string) string {
				e := c.edit(s)
				if c.wantClean != (e == s) {
					t.Fatalf("the edit of case %q did not apply", c.name)
				}
				return e
			})
			cmd := exec.Command(sa, "verify", unit)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			err := cmd.Run()
			// verify also reports on unrelated installed units (e.g. a
			// packaged freeradius.service): keep the lines about ours.
			var ours []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.Contains(l, unit) || strings.Contains(l, "nacd.service") {
					ours = append(ours, l)
				}
			}
			clean := err == nil && len(ours) == 0
			if clean != c.wantClean {
				t.Errorf("systemd-analyze verify: clean=%v, want %v (err %v)\n%s", clean, c.wantClean, err, strings.Join(ours, "\n"))
			}
		})
	}
}

// maxExposure is the highest systemd-analyze security score (0 safest, 10
// unsafe) the unit may have; deployments/README.md reports the measured one.
const maxExposure = 2.0

var reExposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestSystemdAnalyzeSecurity(t *testing.T) {
	sa := testtool.Require(t, "systemd-analyze")
	unit := installedUnit(t, func(s string) string { return s })
	threshold := strconv.Itoa(int(maxExposure * 10))
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold="+threshold, unit).CombinedOutput()
	m := reExposure.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in:\n%s", out)
	}
	score, perr := strconv.ParseFloat(string(m[1]), 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("systemd-analyze security exposure level: %.1f (threshold %.1f)", score, maxExposure)
	if err != nil || score > maxExposure {
		t.Errorf("exposure %.1f above %.1f (exit %v):\n%s", score, maxExposure, err, out)
	}
}

func TestSysusersAndTmpfiles(t *testing.T) {
	sysusers := testtool.Require(t, "systemd-sysusers")
	tmpfiles := testtool.Require(t, "systemd-tmpfiles")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Absolute paths: with --root a relative one is looked up in the root.
	conf := func(name string) string {
		p, err := filepath.Abs(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, err := exec.Command(sysusers, "--root="+root, conf("nacd.sysusers.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	var uid int = -1
	for _, l := range strings.Split(readFile(t, filepath.Join(root, "etc", "passwd")), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[0] == "nacd" {
			uid, _ = strconv.Atoi(f[2])
			if f[5] != "/var/lib/nacd" || !strings.HasSuffix(f[6], "nologin") {
				t.Errorf("nacd passwd entry %q: want home /var/lib/nacd, no login shell", l)
			}
		}
	}
	if uid <= 0 {
		t.Fatalf("systemd-sysusers created no non-root nacd user")
	}
	if os.Geteuid() != 0 {
		t.Skip("systemd-tmpfiles --create needs root to chown (CI runs as root)")
	}
	if out, err := exec.Command(tmpfiles, "--create", "--root="+root, conf("nacd.tmpfiles.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path  string
		mode  fs.FileMode
		owner int
	}{
		{"etc/nacd", 0o750, 0},
		{"etc/nacd/secrets", 0o750, 0},
		{"var/lib/nacd", 0o700, uid},
		{"var/log/nacd", 0o750, uid},
	} {
		st, err := os.Stat(filepath.Join(root, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if st.Mode().Perm() != c.mode {
			t.Errorf("/%s mode %v, want %v", c.path, st.Mode().Perm(), c.mode)
		}
		if o := fileOwner(st); o != c.owner {
			t.Errorf("/%s owner %d, want %d", c.path, o, c.owner)
		}
	}
}

// fileOwner is the owning UID of a file (-1 when unknown).
func fileOwner(st fs.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}

// ---------------------------------------------------------------------------
// Kubernetes

type object = map[string]any

// get walks a path of map keys and slice indexes.
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := o.(map[string]any)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			s, ok := o.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			o = s[k]
		}
	}
	return o
}

func str(o any, path ...any) string {
	s, _ := get(o, path...).(string)
	return s
}

func list(o any, path ...any) []any {
	s, _ := get(o, path...).([]any)
	return s
}

func labels(o any, path ...any) map[string]string {
	out := map[string]string{}
	m, _ := get(o, path...).(map[string]any)
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

// subset reports whether every key of sel is in l with the same value.
func subset(sel, l map[string]string) bool {
	if len(sel) == 0 {
		return false // an empty selector selects everything: never meant here
	}
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return true
}

type manifests struct {
	files   []string // resource files, sorted
	objects []object
	byKind  map[string][]object
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := manifests{byKind: map[string][]object{}}
	for _, p := range paths {
		base := filepath.Base(p)
		if base == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, base)
		dec := yaml.NewDecoder(strings.NewReader(readFile(t, p)))
		n := 0
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if o == nil {
				continue
			}
			n++
			for _, f := range []string{"apiVersion", "kind"} {
				if str(o, f) == "" {
					t.Errorf("%s: document %d has no %s", p, n, f)
				}
			}
			if str(o, "metadata", "name") == "" {
				t.Errorf("%s: %s has no metadata.name", p, str(o, "kind"))
			}
			if l := labels(o, "metadata", "labels"); l["app.kubernetes.io/name"] != "nacd" {
				t.Errorf("%s: %s/%s lacks label app.kubernetes.io/name: nacd", p, str(o, "kind"), str(o, "metadata", "name"))
			}
			m.objects = append(m.objects, o)
			m.byKind[str(o, "kind")] = append(m.byKind[str(o, "kind")], o)
		}
		if n == 0 {
			t.Errorf("%s: no documents", p)
		}
	}
	sort.Strings(m.files)
	return m
}

func (m manifests) one(t *testing.T, kind string) object {
	t.Helper()
	if len(m.byKind[kind]) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(m.byKind[kind]))
	}
	return m.byKind[kind][0]
}

type containerPort struct {
	name     string
	port     int
	protocol string
}

func portsOf(c any) []containerPort {
	var out []containerPort
	for _, p := range list(c, "ports") {
		n, _ := get(p, "containerPort").(int)
		proto := str(p, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		out = append(out, containerPort{name: str(p, "name"), port: n, protocol: proto})
	}
	return out
}

// resolve finds the container port a Service targetPort or probe port
// (a name or a number) refers to.
func resolve(ports []containerPort, target any) (containerPort, bool) {
	for _, p := range ports {
		switch v := target.(type) {
		case string:
			if p.name == v {
				return p, true
			}
		case int:
			if p.port == v {
				return p, true
			}
		}
	}
	return containerPort{}, false
}

// documentation ranges (RFC 5737, RFC 3849): the only addresses allowed in
// the manifests.
var docRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func inDocRange(cidr string) bool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false
	}
	for _, r := range docRanges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		var k struct {
			Resources []string `yaml:"resources"`
			Namespace string   `yaml:"namespace"`
		}
		if err := yaml.Unmarshal([]byte(readFile(t, "kubernetes/kustomization.yaml")), &k); err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(k.Resources)
		sort.Strings(got)
		if !slices.Equal(got, m.files) {
			t.Errorf("kustomization resources %v, files %v", got, m.files)
		}
		if k.Namespace != str(m.one(t, "Namespace"), "metadata", "name") {
			t.Errorf("kustomization namespace %q is not the Namespace manifest's", k.Namespace)
		}
	})

	sts := m.one(t, "StatefulSet")
	pod := get(sts, "spec", "template")
	podLabels := labels(pod, "metadata", "labels")
	containers := list(pod, "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, got %d", len(containers))
	}
	ctr := containers[0]
	ports := portsOf(ctr)
	cm := m.one(t, "ConfigMap")
	nacdYAML := str(cm, "data", "nacd.yaml")
	var nacdCfg struct {
		DataDir string            `yaml:"data_dir"`
		Listen  map[string]string `yaml:"listen"`
		Clients []struct {
			Name       string   `yaml:"name"`
			Networks   []string `yaml:"networks"`
			SecretFile string   `yaml:"secret_file"`
		} `yaml:"clients"`
	}
	if err := yaml.Unmarshal([]byte(nacdYAML), &nacdCfg); err != nil {
		t.Fatalf("ConfigMap nacd.yaml: %v", err)
	}

	t.Run("statefulset", func(t *testing.T) {
		if r, _ := get(sts, "spec", "replicas").(int); r != 1 {
			t.Errorf("replicas %v: one writer of the data dir and its file lock", get(sts, "spec", "replicas"))
		}
		if !subset(labels(sts, "spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("selector does not match the pod template labels")
		}
		svcName := str(sts, "spec", "serviceName")
		found := false
		for _, s := range m.byKind["Service"] {
			if str(s, "metadata", "name") == svcName {
				found = true
				if str(s, "spec", "clusterIP") != "None" {
					t.Errorf("serviceName %s is not headless", svcName)
				}
			}
		}
		if !found {
			t.Errorf("serviceName %q: no such Service", svcName)
		}
	})

	t.Run("container ports match nacd.yaml listeners", func(t *testing.T) {
		// Each listener of nacd.yaml and its container port. radsec is
		// optional (off by default); when set, its port must match too.
		for _, c := range []struct {
			key, port, proto string
			required         bool
		}{
			{"radius_auth", "radius-auth", "UDP", true},
			{"radius_acct", "radius-acct", "UDP", true},
			{"metrics", "metrics", "TCP", true},
			{"radsec", "radsec", "TCP", false},
		} {
			addr, ok := nacdCfg.Listen[c.key]
			if !ok {
				if c.required {
					t.Errorf("nacd.yaml listen.%s not set: the default is loopback only", c.key)
				}
				continue
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("listen.%s %q: %v", c.key, addr, err)
				continue
			}
			if host != "" {
				t.Errorf("listen.%s %q: a pod must listen on every address", c.key, addr)
			}
			p, ok := resolve(ports, c.port)
			if !ok || strconv.Itoa(p.port) != port || p.protocol != c.proto {
				t.Errorf("container port %s = %+v, nacd.yaml listens on %s/%s", c.port, p, addr, c.proto)
			}
		}
		for key := range nacdCfg.Listen {
			switch key {
			case "radius_auth", "radius_acct", "metrics", "radsec":
			case "pki":
				// Loopback in the pod on purpose (see configmap.yaml): no
				// container port, nothing reachable from outside the pod.
				if host, _, err := net.SplitHostPort(nacdCfg.Listen[key]); err != nil || (host != "127.0.0.1" && host != "::1") {
					t.Errorf("nacd.yaml listen.pki %q: loopback only, or add a container port and a Service for it", nacdCfg.Listen[key])
				}
			default:
				t.Errorf("nacd.yaml listen.%s: no container port for it in statefulset.yaml", key)
			}
		}
		if p, ok := resolve(ports, "radsec"); !ok || p.port != 2083 || p.protocol != "TCP" {
			t.Errorf("container port radsec = %+v, want 2083/TCP", p)
		}
	})

	t.Run("probes on the metrics listener", func(t *testing.T) {
		for _, c := range []struct{ probe, path string }{
			{"startupProbe", "/healthz"},
			{"livenessProbe", "/healthz"},
			{"readinessProbe", "/readyz"},
		} {
			pr := get(ctr, c.probe, "httpGet")
			if pr == nil {
				t.Errorf("%s: no httpGet", c.probe)
				continue
			}
			if str(pr, "path") != c.path {
				t.Errorf("%s path %q, want %q", c.probe, str(pr, "path"), c.path)
			}
			p, ok := resolve(ports, get(pr, "port"))
			if !ok || p.name != "metrics" {
				t.Errorf("%s port %v is not the metrics port", c.probe, get(pr, "port"))
			}
		}
	})

	t.Run("security context", func(t *testing.T) {
		for _, c := range []struct {
			path []any
			want any
		}{
			{[]any{"spec", "securityContext", "runAsNonRoot"}, true},
			{[]any{"spec", "securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
			{[]any{"spec", "automountServiceAccountToken"}, false},
		} {
			if got := get(pod, c.path...); got != c.want {
				t.Errorf("pod %v = %v, want %v", c.path, got, c.want)
			}
		}
		for _, c := range []struct {
			path []any
			want any
		}{
			{[]any{"securityContext", "runAsNonRoot"}, true},
			{[]any{"securityContext", "readOnlyRootFilesystem"}, true},
			{[]any{"securityContext", "allowPrivilegeEscalation"}, false},
			{[]any{"securityContext", "privileged"}, false},
			{[]any{"securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
			{[]any{"securityContext", "capabilities", "drop", 0}, "ALL"},
		} {
			if got := get(ctr, c.path...); got != c.want {
				t.Errorf("container %v = %v, want %v", c.path, got, c.want)
			}
		}
		if add := list(ctr, "securityContext", "capabilities", "add"); len(add) > 0 {
			t.Errorf("capabilities added %v: every port is above 1023", add)
		}
		if uid, _ := get(pod, "spec", "securityContext", "runAsUser").(int); uid == 0 {
			t.Errorf("runAsUser %v", get(pod, "spec", "securityContext", "runAsUser"))
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, p := range [][]any{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
			if str(ctr, append([]any{"resources"}, p...)...) == "" {
				t.Errorf("resources.%v not set", p)
			}
		}
	})

	t.Run("volumes, mounts and args agree", func(t *testing.T) {
		mounts := map[string]string{}
		for _, vm := range list(ctr, "volumeMounts") {
			mounts[str(vm, "name")] = str(vm, "mountPath")
		}
		vols := map[string]any{}
		for _, v := range list(pod, "spec", "volumes") {
			vols[str(v, "name")] = v
		}
		for _, v := range list(sts, "spec", "volumeClaimTemplates") {
			vols[str(v, "metadata", "name")] = v
		}
		for name := range mounts {
			if vols[name] == nil {
				t.Errorf("volumeMount %s: no such volume", name)
			}
		}
		if n := str(vols["config"], "configMap", "name"); n != str(cm, "metadata", "name") {
			t.Errorf("config volume names ConfigMap %q", n)
		}
		secret := m.one(t, "Secret")
		if n := str(vols["secrets"], "secret", "secretName"); n != str(secret, "metadata", "name") {
			t.Errorf("secrets volume names Secret %q", n)
		}
		var args []string
		for _, a := range list(ctr, "args") {
			s, _ := a.(string)
			args = append(args, s)
		}
		argAfter := func(flag string) string {
			if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
				return args[i+1]
			}
			return ""
		}
		if want := mounts["config"] + "/nacd.yaml"; argAfter("--config") != want {
			t.Errorf("--config %q, want %q (the ConfigMap mount)", argAfter("--config"), want)
		}
		if argAfter("--data-dir") != mounts["data"] || nacdCfg.DataDir != mounts["data"] {
			t.Errorf("--data-dir %q, data_dir %q, data volume at %q: want all equal", argAfter("--data-dir"), nacdCfg.DataDir, mounts["data"])
		}
		keys := labels(secret, "stringData")
		for _, c := range nacdCfg.Clients {
			dir, file := filepath.Split(c.SecretFile)
			if filepath.Clean(dir) != mounts["secrets"] {
				t.Errorf("client %s secret_file %s is not under the Secret mount %s", c.Name, c.SecretFile, mounts["secrets"])
			}
			if _, ok := keys[file]; !ok {
				t.Errorf("client %s secret_file %s: the Secret has no key %q", c.Name, c.SecretFile, file)
			}
		}
	})

	t.Run("secret values are placeholders", func(t *testing.T) {
		for k, v := range labels(m.one(t, "Secret"), "stringData") {
			if !strings.Contains(v, "CHANGE-ME") {
				t.Errorf("Secret key %s: value is not a CHANGE-ME placeholder", k)
			}
			if strings.HasPrefix(k, "radius-") && len(v) >= config.MinSecretLength {
				t.Errorf("Secret key %s: placeholder has %d characters; under %d nacd refuses it, so an unchanged deployment fails closed", k, len(v), config.MinSecretLength)
			}
		}
		if len(labels(m.one(t, "Secret"), "data")) > 0 {
			t.Errorf("Secret has base64 data: keep placeholders in stringData, readable")
		}
	})

	t.Run("services", func(t *testing.T) {
		seen := map[string]bool{}
		for _, s := range m.byKind["Service"] {
			name := str(s, "metadata", "name")
			if !subset(labels(s, "spec", "selector"), podLabels) {
				t.Errorf("Service %s selects no nacd pod", name)
			}
			radius := false
			for _, p := range list(s, "spec", "ports") {
				proto := str(p, "protocol")
				if proto == "" {
					proto = "TCP"
				}
				cp, ok := resolve(ports, get(p, "targetPort"))
				if !ok || cp.protocol != proto {
					t.Errorf("Service %s port %s: targetPort %v is no container port of protocol %s", name, str(p, "name"), get(p, "targetPort"), proto)
					continue
				}
				seen[cp.name] = true
				if cp.name != "metrics" {
					radius = true
				}
			}
			if radius {
				if str(s, "spec", "externalTrafficPolicy") != "Local" {
					t.Errorf("Service %s carries RADIUS without externalTrafficPolicy: Local: nacd matches clients by source address", name)
				}
				for _, r := range list(s, "spec", "loadBalancerSourceRanges") {
					if c, _ := r.(string); !inDocRange(c) {
						t.Errorf("Service %s source range %v is not a documentation placeholder", name, r)
					}
				}
			}
		}
		for _, p := range ports {
			if !seen[p.name] {
				t.Errorf("container port %s is in no Service", p.name)
			}
		}
	})

	t.Run("service monitor selects the metrics port", func(t *testing.T) {
		sm := m.one(t, "ServiceMonitor")
		if str(sm, "apiVersion") != "monitoring.coreos.com/v1" {
			t.Errorf("ServiceMonitor apiVersion %q", str(sm, "apiVersion"))
		}
		sel := labels(sm, "spec", "selector", "matchLabels")
		var matched []object
		for _, s := range m.byKind["Service"] {
			if subset(sel, labels(s, "metadata", "labels")) {
				matched = append(matched, s)
			}
		}
		if len(matched) != 1 {
			t.Fatalf("ServiceMonitor selects %d Services, want 1", len(matched))
		}
		for _, e := range list(sm, "spec", "endpoints") {
			found := false
			for _, p := range list(matched[0], "spec", "ports") {
				if str(p, "name") == str(e, "port") {
					cp, _ := resolve(ports, get(p, "targetPort"))
					found = cp.name == "metrics"
				}
			}
			if !found || str(e, "path") != "/metrics" {
				t.Errorf("ServiceMonitor endpoint port %q path %q: want the Service's metrics port and /metrics", str(e, "port"), str(e, "path"))
			}
		}
	})

	t.Run("pod disruption budget", func(t *testing.T) {
		pdb := m.one(t, "PodDisruptionBudget")
		if !subset(labels(pdb, "spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("PodDisruptionBudget selects no nacd pod")
		}
	})

	t.Run("network policy", func(t *testing.T) {
		np := m.one(t, "NetworkPolicy")
		if !subset(labels(np, "spec", "podSelector", "matchLabels"), podLabels) {
			t.Errorf("NetworkPolicy selects no nacd pod")
		}
		allowed := map[string]bool{}
		for _, rule := range list(np, "spec", "ingress") {
			fromIP := false
			for _, f := range list(rule, "from") {
				if c := str(f, "ipBlock", "cidr"); c != "" {
					fromIP = true
					if !inDocRange(c) {
						t.Errorf("ingress ipBlock %s is not a documentation placeholder", c)
					}
				}
			}
			for _, p := range list(rule, "ports") {
				n, _ := get(p, "port").(int)
				key := fmt.Sprintf("%d/%s", n, str(p, "protocol"))
				if fromIP {
					allowed[key] = true
				}
			}
			if len(list(rule, "from")) == 0 {
				t.Errorf("an ingress rule without from: allows everyone")
			}
		}
		for _, want := range []string{"1812/UDP", "1813/UDP", "2083/TCP"} {
			if !allowed[want] {
				t.Errorf("RADIUS %s is not allowed from the controller subnets", want)
			}
		}
		// Disconnect/CoA go to the same controllers, on UDP 3799.
		coa := map[string]bool{}
		for _, rule := range list(np, "spec", "egress") {
			var cidrs []string
			for _, to := range list(rule, "to") {
				if c := str(to, "ipBlock", "cidr"); c != "" {
					cidrs = append(cidrs, c)
					if !inDocRange(c) {
						t.Errorf("egress ipBlock %s is not a documentation placeholder", c)
					}
				}
			}
			for _, p := range list(rule, "ports") {
				if n, _ := get(p, "port").(int); n == config.DefaultCoAPort && str(p, "protocol") == "UDP" {
					for _, c := range cidrs {
						coa[c] = true
					}
				}
			}
		}
		for _, rule := range list(np, "spec", "ingress") {
			for _, f := range list(rule, "from") {
				if c := str(f, "ipBlock", "cidr"); c != "" && !coa[c] {
					t.Errorf("egress does not allow Disconnect/CoA (UDP %d) to controller subnet %s", config.DefaultCoAPort, c)
				}
			}
		}
	})

	t.Run("client networks are placeholders", func(t *testing.T) {
		for _, c := range nacdCfg.Clients {
			for _, n := range c.Networks {
				if !inDocRange(n) {
					t.Errorf("client %s network %s is not a documentation placeholder", c.Name, n)
				}
			}
		}
	})
}

// TestKubernetesConfigCheck runs `nacd config check` on the ConfigMap's
// nacd.yaml, with its secret files written to a temp dir: with the Secret's
// placeholders it must fail (an unchanged deployment does not start), with
// real-length secrets it must pass.
func TestKubernetesConfigCheck(t *testing.T) {
	bin := nacdBinary(t)
	m := loadManifests(t)
	nacdYAML := str(m.one(t, "ConfigMap"), "data", "nacd.yaml")
	placeholders := labels(m.one(t, "Secret"), "stringData")
	generated := func(k string) string {
		if k == "store-dsn" {
			return placeholders[k] // a well-formed DSN; config check does not connect
		}
		return "s3cret-" + k + "-0123456789abcdef"
	}
	// The options the ConfigMap documents as comments (RadSec, the
	// PostgreSQL session store from the Secret), uncommented.
	reOptional := regexp.MustCompile(`(?m)^(\s*)# (radsec: ":2083"|radsec:|  enabled: true|accounting:|  store_file: .*)$`)
	for _, c := range []struct {
		name     string
		secret   func(key string) string
		optional bool
		wantOK   bool
		wantText string
	}{
		{"placeholder secrets from secret.yaml", func(k string) string { return placeholders[k] }, false, false, "fewer than 16"},
		{"generated secrets", generated, false, true, "ok: "},
		{"generated secrets, RadSec and PostgreSQL options uncommented", generated, true, true, "postgres://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			secrets := filepath.Join(dir, "secrets")
			if err := os.Mkdir(secrets, 0o700); err != nil {
				t.Fatal(err)
			}
			for k := range placeholders {
				if err := os.WriteFile(filepath.Join(secrets, k), []byte(c.secret(k)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			text := strings.ReplaceAll(nacdYAML, "/etc/nacd/secrets/", secrets+"/")
			if c.optional {
				if n := len(reOptional.FindAllString(text, -1)); n != 5 {
					t.Fatalf("found %d of the 5 commented option lines in nacd.yaml", n)
				}
				text = reOptional.ReplaceAllString(text, "${1}${2}")
			}
			cfg := filepath.Join(dir, "nacd.yaml")
			if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "config", "check", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if (err == nil) != c.wantOK {
				t.Fatalf("nacd config check: err %v, want ok=%v\nstdout:\n%s\nstderr:\n%s", err, c.wantOK, stdout.String(), stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, c.wantText) {
				t.Errorf("nacd config check output lacks %q:\n%s", c.wantText, out)
			}
			for k := range placeholders {
				if strings.HasPrefix(k, "radius-") && strings.Contains(stdout.String()+stderr.String(), c.secret(k)) {
					t.Errorf("nacd config check printed the secret of %s", k)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Metric names and label values from the code

var reMetricLiteral = regexp.MustCompile(`"(nacd_[a-z0-9_]+)"`)

// exportedMetrics returns the nacd_* metric names registered in the Go
// sources (non-test files), with a histogram's series suffixes.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "deployments", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range reMetricLiteral.FindAllSubmatch(b, -1) {
			n := string(m[1])
			names[n] = true
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !names["nacd_radius_decisions_total"] {
		t.Fatalf("found no nacd_radius_decisions_total in the sources: the scan is broken (%d names)", len(names))
	}
	return names
}

// pendingMetrics are used by rules and the dashboard before nacd exports
// them (issue 5, part 2). Each rule using one says so in a comment.
var pendingMetrics = map[string]string{}

// standardMetrics come from Prometheus itself or client_golang's collectors.
var standardMetrics = map[string]bool{
	"up":                            true,
	"process_resident_memory_bytes": true,
	"process_cpu_seconds_total":     true,
	"go_memstats_heap_inuse_bytes":  true,
}

var (
	reNacdName = regexp.MustCompile(`\bnacd_[a-z0-9_]+\b`)
	reOther    = regexp.MustCompile(`\b(up|process_[a-z_]+|go_[a-z_]+)\s*\{`)
)

// checkExprMetrics reports metric names in a PromQL expression that nacd
// neither exports nor has pending.
func checkExprMetrics(t *testing.T, where, expr string, exported map[string]bool) {
	t.Helper()
	for _, n := range reNacdName.FindAllString(expr, -1) {
		if !exported[n] {
			if _, ok := pendingMetrics[n]; !ok {
				t.Errorf("%s: metric %s is not exported by nacd (nor listed as pending): %s", where, n, expr)
			}
		}
	}
	for _, m := range reOther.FindAllStringSubmatch(expr, -1) {
		if !standardMetrics[m[1]] {
			t.Errorf("%s: metric %s is not a known standard metric", where, m[1])
		}
	}
}

// labelValues returns the string constants named prefix* in a Go file:
// the stable label values (drop causes, eviction causes).
func labelValues(t *testing.T, file, prefix string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`\b` + prefix + `[A-Za-z]+\s*=\s*"([a-z_]+)"`)
	out := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(readFile(t, filepath.Join(repoRoot, file)), -1) {
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatalf("no %s* constants in %s", prefix, file)
	}
	return out
}

// checkLabelValues reports values of label in matchers on metric that the
// code never produces.
func checkLabelValues(t *testing.T, where, expr, metric, label string, valid map[string]bool) {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(metric) + `\{([^}]*)\}`)
	lv := regexp.MustCompile(`\b` + label + `\s*=~?\s*"([^"]*)"`)
	for _, m := range re.FindAllStringSubmatch(expr, -1) {
		for _, v := range lv.FindAllStringSubmatch(m[1], -1) {
			for _, alt := range strings.Split(v[1], "|") {
				if !valid[alt] {
					t.Errorf("%s: %s{%s=%q}: nacd never uses that value (known: %v)", where, metric, label, alt, sortedKeys(valid))
				}
			}
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkExprLabels(t *testing.T, where, expr string) {
	t.Helper()
	checkLabelValues(t, where, expr, "nacd_radius_dropped_total", "cause", labelValues(t, "radius/packet.go", "Drop"))
	checkLabelValues(t, where, expr, "nacd_radius_eap_evictions_total", "cause", labelValues(t, "radius/conversations.go", "Evict"))
	checkLabelValues(t, where, expr, "nacd_radius_decisions_total", "result", labelValues(t, "radius/accesslog.go", "Result"))
	checkLabelValues(t, where, expr, "nacd_radius_dynauth_requests_total", "result", labelValues(t, "radius/dynauth.go", "DynAuth"))
	checkLabelValues(t, where, expr, "nacd_config_reloads_total", "result", labelValues(t, "cmd/nacd/reload.go", "reload"))
}

// ---------------------------------------------------------------------------
// Prometheus

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

const (
	rulesFile = "prometheus/nacd-rules.yml"
)

var ruleTests = []string{"prometheus/nacd-rules.test.yml", "prometheus/nacd-rules-site-silent.test.yml"}

func TestPrometheusRulesContent(t *testing.T) {
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(readFile(t, rulesFile)), &rf); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	var tests string
	for _, f := range ruleTests {
		tests += readFile(t, f)
	}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			where := "alert " + r.Alert
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			checkExprMetrics(t, where, r.Expr, exported)
			checkExprLabels(t, where, r.Expr)
			if !strings.Contains(tests, "alertname: "+r.Alert+"\n") {
				t.Errorf("%s: no promtool unit test names it", where)
			}
		}
	}
	for _, want := range []string{
		"NacdDown", "NacdRejectRatioHigh", "NacdSiteSilent", "NacdCRLExpired", "NacdCRLOld",
		"NacdCACertificateExpiring", "NacdServerCertificateExpiring", "NacdAuditLogFailing",
		"NacdRADIUSBadAuthenticator", "NacdEAPConversationTableFull",
	} {
		if !alerts[want] {
			t.Errorf("alert %s missing", want)
		}
	}
	text := readFile(t, rulesFile)
	for n := range pendingMetrics {
		if exported[n] {
			t.Logf("metric %s is now exported: drop it from pendingMetrics and the NOT EXPORTED YET comments", n)
		} else if !strings.Contains(text, "Uses "+n+": NOT EXPORTED YET") && strings.Contains(text, n+")") {
			t.Errorf("a rule uses pending metric %s without the comment \"Uses %s: NOT EXPORTED YET\"", n, n)
		}
	}
}

func TestPromtool(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"check rules", []string{"check", "rules", rulesFile}},
		{"test rules", append([]string{"test", "rules"}, ruleTests...)},
		{"check config", []string{"check", "config", "prometheus/prometheus.example.yml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(promtool, c.args...).CombinedOutput()
			if err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(c.args, " "), err, out)
			}
		})
	}
	// Control: promtool test rules must catch a rule that no longer fires.
	t.Run("a broken rule fails its unit test", func(t *testing.T) {
		dir := t.TempDir()
		broken := strings.Replace(readFile(t, rulesFile), "expr: up{job=~\"nacd.*\"} == 0", "expr: up{job=~\"nacd.*\"} == 2", 1)
		if broken == readFile(t, rulesFile) {
			t.Fatal("NacdDown expression not found")
		}
		for name, text := range map[string]string{"nacd-rules.yml": broken, "t.yml": readFile(t, ruleTests[0])} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(promtool, "test", "rules", "t.yml")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("promtool test rules passed with NacdDown broken:\n%s", out)
		}
	})
}

// ---------------------------------------------------------------------------
// Grafana

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	text := []byte(readFile(t, "grafana/nacd-dashboard.json"))
	if !json.Valid(text) {
		t.Fatal("nacd-dashboard.json is not valid JSON")
	}
	var d dashboard
	if err := json.Unmarshal(text, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// grafanaVars replaces Grafana's variables so a panel expression is plain
// PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"$instance", ".*",
	"$site", ".*",
)

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestGrafanaDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a recent one (>= 36)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Datasource != nil && v.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("variable %s uses datasource %q, want ${DS_PROMETHEUS}", v.Name, v.Datasource.UID)
		}
	}
	if vars["DS_PROMETHEUS"] != "datasource" {
		t.Errorf("no datasource variable DS_PROMETHEUS (have %v)", vars)
	}
	exported := exportedMetrics(t)
	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	titles := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		titles[p.Title] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			t.Errorf("panel %q gridPos %+v out of the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at (%d,%d)", p.Title, other, x, y)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %q %s", p.Title, tg.RefID)
			if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("%s: datasource %+v", where, tg.Datasource)
			}
			checkExprMetrics(t, where, tg.Expr, exported)
			checkExprLabels(t, where, tg.Expr)
		}
	}
	for _, want := range []string{
		"Authentications/s by result", "Decisions by segment", "Decisions by site",
		"Rejects by reason", "Drops by cause", "EAP-TLS handshake latency p50 / p99 by TLS version",
		"EAP conversations in flight", "CRL age per anchor", "Certificate expiry",
	} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}

// TestGrafanaPromQL checks every panel expression's syntax with promtool:
// each becomes a recording rule of a generated rule file.
func TestGrafanaPromQL(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	d := loadDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:panel%d_%s", p.ID, strings.ToLower(tg.RefID)), Expr: grafanaVars.Replace(tg.Expr)})
		}
	}
	if len(rules) < 10 {
		t.Fatalf("only %d panel expressions", len(rules))
	}
	write := func(rs []rule) string {
		b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if out, err := exec.Command(promtool, "check", "rules", write(rules)).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
	// Control: a syntax error must be caught.
	bad := append(slices.Clone(rules), rule{Record: "dashboard:broken", Expr: "sum by (site) (rate(nacd_radius_decisions_total[5m]"})
	if out, err := exec.Command(promtool, "check", "rules", write(bad)).CombinedOutput(); err == nil {
		t.Errorf("promtool accepted a broken expression:\n%s", out)
	}
}
