package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/herts-council/nacd/configs"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// goodSecret is a shared secret long enough to be accepted.
const goodSecret = "0123456789abcdef-lab"

// minimal is the smallest valid configuration; cases append to it.
const minimal = `
clients:
  - name: wlc
    networks: [10.0.0.0/24]
    secret: ` + goodSecret + `
    site: Wallfields
sites:
  - name: Wallfields
    vlans: {il3: 310, general: 110, guest: 120}
policy:
  rules:
    - name: everyone
      segment: guest
`

func TestExampleLoads(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// The example names ./nacd-data/radius-secret.
	if _, _, err := EnsureSecretFile(filepath.Join("nacd-data", "radius-secret")); err != nil {
		t.Fatal(err)
	}
	example := filepath.Join(t.TempDir(), "nacd.example.yaml")
	if err := os.WriteFile(example, configs.Example, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(example, "")
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	if cfg.DataDir != "./nacd-data" {
		t.Errorf("DataDir = %q", cfg.DataDir)
	}
	if len(cfg.Clients) != 1 || cfg.Clients[0].Site != "Wallfields" || !cfg.Clients[0].RequireMessageAuthenticator {
		t.Errorf("Clients = %+v", cfg.Clients)
	}
	if got := len(cfg.Policy.Rules); got < 5 {
		t.Errorf("the example has %d rules, want the full default rule set", got)
	}
	if !cfg.NeedsBootstrap() {
		t.Error("the example should use the bootstrap PKI")
	}
}

// TestExampleDocumentsEveryField checks that every field of the file format
// appears in the example (as a key or in a comment), so the documentation of
// defaults cannot fall behind the loader.
func TestExampleDocumentsEveryField(t *testing.T) {
	text := string(configs.Example)
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for name, ft := range yamlFields(typ) {
			if !strings.Contains(text, name+":") {
				t.Errorf("configs/nacd.example.yaml does not document %s", join(path, name))
			}
			walk(ft, join(path, name))
		}
	}
	walk(reflect.TypeOf(rawConfig{}), "")
}

func TestBuiltin(t *testing.T) {
	dir := t.TempDir()
	secret, created, err := EnsureSecretFile(SecretPath(dir))
	if err != nil || !created || len(secret) != 32 {
		t.Fatalf("EnsureSecretFile = %q, %v, %v", secret, created, err)
	}
	again, created, err := EnsureSecretFile(SecretPath(dir))
	if err != nil || created || again != secret {
		t.Fatalf("second EnsureSecretFile = %q, %v, %v; want the same secret, not created", again, created, err)
	}
	st, err := os.Stat(SecretPath(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}

	cfg, err := Builtin(dir)
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	if cfg.Source != BuiltinSource || cfg.DataDir != dir {
		t.Errorf("Source, DataDir = %q, %q", cfg.Source, cfg.DataDir)
	}
	if string(cfg.Clients[0].Secret) != secret {
		t.Error("the loopback client does not use the generated secret")
	}
	if cfg.Clients[0].Site != "Wallfields" {
		t.Errorf("loopback site = %q, want Wallfields (the README tour expects il3)", cfg.Clients[0].Site)
	}
	var names []string
	for _, s := range cfg.Sites {
		names = append(names, s.Name)
	}
	if want := []string{"Wallfields", "Hertford Theatre", "Bishops Stortford"}; !reflect.DeepEqual(names, want) {
		t.Errorf("sites = %v, want %v", names, want)
	}
	want := Listen{RADIUSAuth: "127.0.0.1:1812", RADIUSAcct: "127.0.0.1:1813", Metrics: "127.0.0.1:9812", PKI: DefaultPKI}
	if cfg.Listen != want {
		t.Errorf("Listen = %+v, want %+v", cfg.Listen, want)
	}
	if cfg.TLS.MinVersion != tls.VersionTLS12 || cfg.TLS.MaxVersion != tls.VersionTLS13 || cfg.TLS.FragmentSize != 1020 || cfg.TLS.MaxMessageSize != 65536 {
		t.Errorf("TLS = %+v", cfg.TLS)
	}
	if cfg.Limits != (Limits{MaxConversations: 65536, ConversationTimeout: 30 * time.Second, DuplicateWindow: 5 * time.Second}) {
		t.Errorf("Limits = %+v", cfg.Limits)
	}
	if cfg.Log.Level != zapcore.InfoLevel || cfg.Log.AccessLog != "stdout" {
		t.Errorf("Log = %+v", cfg.Log)
	}
	if cfg.Policy.MaxRevocationAge != 7*24*time.Hour {
		t.Errorf("MaxRevocationAge = %v", cfg.Policy.MaxRevocationAge)
	}

	if _, err := Builtin(t.TempDir()); err == nil || !strings.Contains(err.Error(), "clients[0].secret_file") {
		t.Errorf("Builtin without a secret file: err = %v, want a clients[0].secret_file problem", err)
	}
}

// TestBuiltinPersonas runs the built-in policy over the personas of design
// section 4 at each site.
func TestBuiltinPersonas(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := EnsureSecretFile(SecretPath(dir)); err != nil {
		t.Fatal(err)
	}
	cfg, err := Builtin(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	fresh := policy.Revocation{Checked: true, Source: "crl:nacd-local", Age: time.Minute}
	id := func(own policy.Ownership, role policy.Role, il3 bool) policy.Identity {
		return policy.Identity{
			Ownership: own, Role: role, ClearanceIL3: il3,
			Anchor: BootstrapAnchorName, AnchorIL3: true, Status: policy.CertOK, Revocation: fresh,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		}
	}
	tests := []struct {
		name    string
		id      policy.Identity
		site    string
		segment policy.Segment
		vlan    int
	}{
		{"staff council laptop with clearance at Wallfields", id(policy.OwnershipCouncilManaged, policy.RoleStaff, true), "Wallfields", policy.SegmentIL3, 310},
		{"staff council laptop with clearance at Hertford Theatre (no il3)", id(policy.OwnershipCouncilManaged, policy.RoleStaff, true), "Hertford Theatre", policy.SegmentGeneral, 210},
		{"staff council laptop with clearance at Bishops Stortford", id(policy.OwnershipCouncilManaged, policy.RoleStaff, true), "Bishops Stortford", policy.SegmentIL3, 410},
		{"staff council laptop without clearance", id(policy.OwnershipCouncilManaged, policy.RoleStaff, false), "Wallfields", policy.SegmentGeneral, 110},
		{"staff own phone", id(policy.OwnershipPersonal, policy.RoleStaff, false), "Wallfields", policy.SegmentGuest, 120},
		{"staff own phone claiming clearance", id(policy.OwnershipPersonal, policy.RoleStaff, true), "Wallfields", policy.SegmentGuest, 120},
		{"member own tablet", id(policy.OwnershipPersonal, policy.RoleMember, false), "Wallfields", policy.SegmentGeneral, 110},
		{"contractor own laptop", id(policy.OwnershipPersonal, policy.RoleContractor, false), "Wallfields", policy.SegmentGuest, 120},
		{"visitor", id(policy.OwnershipPersonal, policy.RoleVisitor, false), "Hertford Theatre", policy.SegmentGuest, 220},
		{"no role asserted", id(policy.OwnershipPersonal, policy.RoleUnknown, false), "Wallfields", policy.SegmentOnboarding, 130},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := cfg.Policy.Decide(tc.id, policy.Request{Site: tc.site, Now: now})
			if d.Segment != tc.segment || d.VLAN != tc.vlan {
				t.Errorf("Decide = %+v, want %s VLAN %d", d, tc.segment, tc.vlan)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProblems feeds one bad input per case and checks the problem names
// the field path and the line.
func TestProblems(t *testing.T) {
	dir := t.TempDir()
	longFile := writeFile(t, dir, "long", goodSecret+"\n", 0o600)
	shortFile := writeFile(t, dir, "short", "tooshort\n", 0o600)
	emptyFile := writeFile(t, dir, "empty", "\n", 0o600)
	client := func(extra string) string {
		return `
sites:
  - name: Wallfields
    vlans: {general: 110}
policy:
  rules:
    - name: everyone
      segment: general
clients:
  - name: wlc
    networks: [10.0.0.0/24]
    site: Wallfields
` + extra
	}
	tests := []struct {
		name string
		yaml string
		want []string // substrings of one problem each: "line N: path: message"
	}{
		{
			name: "unknown top-level field",
			yaml: minimal + "listen_on: 1\n",
			want: []string{`line 13: listen_on: unknown field "listen_on"`},
		},
		{
			name: "unknown nested field (typo)",
			yaml: strings.Replace(minimal, "    site: Wallfields", "    site: Wallfields\n    requre_message_authenticator: false", 1),
			want: []string{`line 6: clients[0].requre_message_authenticator: unknown field`},
		},
		{
			name: "unknown segment in vlans",
			yaml: strings.Replace(minimal, "guest: 120}", "guest: 120, dmz: 5}", 1),
			want: []string{`line 8: sites[0].vlans.dmz: unknown field "dmz"`},
		},
		{
			name: "wrong type",
			yaml: minimal + "tls:\n  fragment_size: big\n",
			want: []string{"line 14: tls.fragment_size: cannot unmarshal"},
		},
		{
			name: "syntax error",
			yaml: "clients: [\n",
			want: []string{"line "},
		},
		{
			name: "not a mapping",
			yaml: "- a\n- b\n",
			want: []string{"line 1: the file must be a YAML mapping"},
		},
		{
			name: "duplicate key",
			yaml: minimal + "clients: []\n",
			want: []string{`line 13: clients: mapping key "clients" already defined`},
		},
		{
			name: "bad network",
			yaml: client("    secret: " + goodSecret + "\n  - name: wlc2\n    networks: [10.1.0.0/24, 10.0.0.300]\n    secret: " + goodSecret + "\n    site: Wallfields\n"),
			want: []string{`line 14: clients[1].networks[1]: "10.0.0.300" is not an IP or CIDR`},
		},
		{
			name: "overlapping networks",
			yaml: client("    secret: " + goodSecret + "\n  - name: wlc2\n    networks: [10.0.0.7]\n    secret: " + goodSecret + "\n    site: Wallfields\n"),
			want: []string{`line 14: clients[1].networks[0]: 10.0.0.7/32 overlaps clients[0].networks[0]`},
		},
		{
			name: "no secret",
			yaml: client(""),
			want: []string{`line 9: clients[0].secret_file: a shared secret is required`},
		},
		{
			name: "secret and secret_file",
			yaml: client("    secret: " + goodSecret + "\n    secret_file: " + longFile + "\n"),
			want: []string{`line 12: clients[0].secret: give secret or secret_file, not both`},
		},
		{
			name: "weak inline secret",
			yaml: client("    secret: tooshort\n"),
			want: []string{`line 12: clients[0].secret: the shared secret has 8 characters, fewer than 16`},
		},
		{
			name: "weak secret file",
			yaml: client("    secret_file: " + shortFile + "\n"),
			want: []string{`line 12: clients[0].secret_file: the shared secret has 8 characters`},
		},
		{
			name: "empty secret file",
			yaml: client("    secret_file: " + emptyFile + "\n"),
			want: []string{`line 12: clients[0].secret_file: ` + emptyFile + ` is empty`},
		},
		{
			name: "missing secret file",
			yaml: client("    secret_file: " + filepath.Join(dir, "nope") + "\n"),
			want: []string{`line 12: clients[0].secret_file: cannot read`},
		},
		{
			name: "unknown client site",
			yaml: strings.Replace(minimal, "    site: Wallfields", "    site: Hertford", 1),
			want: []string{`line 5: clients[0].site: unknown site "Hertford" (sites: "Wallfields")`},
		},
		{
			name: "duplicate client and site names",
			yaml: minimal + "", // patched below
			want: nil,
		},
		{
			name: "vlan out of range and shared",
			yaml: strings.Replace(minimal, "{il3: 310, general: 110, guest: 120}", "{il3: 5000, general: 110, guest: 110}", 1),
			want: []string{
				`line 8: sites[0].vlans.guest: VLAN 110 is also the general VLAN`,
				`line 8: sites[0].vlans.il3: VLAN 5000 out of range 1..4094`,
			},
		},
		{
			name: "personal device on il3 (invariant 1)",
			yaml: minimal + "    - name: byod-il3\n      match:\n        ownership: [personal]\n        clearance_il3: true\n      segment: il3\n",
			want: []string{`line 15: policy.rules[1].match.ownership: rule "byod-il3": an il3 rule must require ownership exactly [council-managed]`},
		},
		{
			name: "il3 rule without ownership condition",
			yaml: minimal + "    - name: anyone-il3\n      segment: il3\n",
			want: []string{
				`line 13: policy.rules[1].match.ownership: rule "anyone-il3": an il3 rule must require ownership exactly [council-managed]`,
				`line 13: policy.rules[1].match.clearance_il3: rule "anyone-il3": an il3 rule must require clearance_il3: true`,
			},
		},
		{
			name: "bad rule fields",
			yaml: minimal + "    - name: x\n      match:\n        roles: [mayor]\n        anchors: [adcs]\n      segment: general\n      session_timeout: forever\n    - name: y\n",
			want: []string{
				`line 15: policy.rules[1].match.roles[0]: rule "x": unknown role "mayor"`,
				`line 16: policy.rules[1].match.anchors[0]: unknown trust anchor "adcs" (anchors: "nacd-local")`,
				`line 18: policy.rules[1].session_timeout: "forever" is not a duration`,
				`line 19: policy.rules[2].segment: is required`,
			},
		},
		{
			name: "no clients, sites or rules",
			yaml: "data_dir: /tmp/x\n",
			want: []string{"clients: at least one client", "sites: at least one site", "policy.rules: at least one rule"},
		},
		{
			name: "bad listeners",
			yaml: minimal + "listen:\n  radius_auth: 1812\n  metrics: 127.0.0.1:99999\n  radius_acct: example.org:1813\n",
			want: []string{
				`line 14: listen.radius_auth: "1812" is not host:port`,
				`line 15: listen.metrics: "127.0.0.1:99999": port "99999" is not a number`,
				`line 16: listen.radius_acct: "example.org:1813": host "example.org" is not an IP address`,
			},
		},
		{
			name: "bad tls",
			yaml: minimal + "tls:\n  certificate: /nonexistent.pem\n  min_version: \"1.3\"\n  max_version: \"1.2\"\n  fragment_size: 10\n  max_message_size: 100\n",
			want: []string{
				`line 14: tls.key: certificate is set but key is not`,
				`line 16: tls.max_version: "1.2" is below min_version "1.3"`,
				`line 17: tls.fragment_size: 10 is out of range 64..4000`,
				`line 18: tls.max_message_size: 100 is out of range 4096..16777216`,
			},
		},
		{
			name: "old tls version",
			yaml: minimal + "tls:\n  min_version: \"1.0\"\n",
			want: []string{`line 14: tls.min_version: "1.0" is not a TLS version nacd accepts`},
		},
		{
			name: "bad trust anchor",
			yaml: minimal + "trust_anchors:\n  - name: adcs\n    ca_files: [/nonexistent/root.pem]\n    crls: [ftp://x/y.crl]\n    crl_refresh: 0s\n    oids:\n      staff: [1.2.3, \"01.2\"]\n      member: [1.2.3]\n  - name: adcs\n",
			want: []string{
				`line 15: trust_anchors[0].ca_files[0]: cannot read: /nonexistent/root.pem`,
				`line 16: trust_anchors[0].crls[0]: "ftp://x/y.crl" is not an http(s) URL or a file path`,
				`line 17: trust_anchors[0].crl_refresh: must be at least 1s, got 0s`,
				`line 19: trust_anchors[0].oids.staff[1]: "01.2" is not`,
				`line 20: trust_anchors[0].oids.member[0]: "1.2.3" already stands for staff`,
				`line 21: trust_anchors[1].name: duplicate trust anchor "adcs"`,
				`line 21: trust_anchors[1].ca_files: at least one CA file`,
			},
		},
		{
			name: "limits and log",
			yaml: minimal + "limits:\n  max_conversations: 0\n  conversation_timeout: 100ms\n  duplicate_window: soon\nlog:\n  level: chatty\n",
			want: []string{
				`line 14: limits.max_conversations: 0 is out of range`,
				`line 15: limits.conversation_timeout: must be at least 1s, got 100ms`,
				`line 16: limits.duplicate_window: "soon" is not a duration`,
				`line 18: log.level: "chatty" is not a log level`,
			},
		},
	}
	for _, tc := range tests {
		if tc.want == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.TrimPrefix(tc.yaml, "\n")), "test.yaml", "")
			if err == nil {
				t.Fatalf("Parse succeeded, want problems %q", tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error: %v", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), "config: "+w) {
					t.Errorf("missing problem %q in:\n%v", w, err)
				}
			}
			if len(ce.Problems) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(ce.Problems), len(tc.want), err)
			}
			for _, p := range ce.Problems {
				if tc.name != "syntax error" && tc.name != "not a mapping" && p.Path == "" {
					t.Errorf("problem without a field path: %v", p)
				}
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "test.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprintf("%v", cfg.Clients), fmt.Sprintf("%+v", cfg.Clients), fmt.Sprintf("%#v", cfg.Clients),
		fmt.Sprintf("%s", cfg.Clients[0].Secret), fmt.Sprintf("%x", cfg.Clients[0].Secret), fmt.Sprintf("%q", cfg.Clients[0].Secret),
	} {
		if strings.Contains(s, goodSecret) || strings.Contains(s, fmt.Sprintf("%x", goodSecret)) {
			t.Errorf("secret printed: %s", s)
		}
	}
	// A weak-secret problem says the length, never the secret.
	_, err = Parse([]byte(strings.Replace(minimal, goodSecret, "hunter2", 1)), "test.yaml", "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v; want a problem that does not print the secret", err)
	}
}

func TestClientOptions(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "secret", "  "+goodSecret+"  \n\n", 0o600)
	y := strings.Replace(minimal, "    secret: "+goodSecret, "    secret_file: "+secretFile+"\n    require_message_authenticator: false", 1)
	y = strings.Replace(y, "networks: [10.0.0.0/24]", "networks: [10.0.0.0/24, 192.0.2.7, \"2001:db8::/32\", 10.9.9.9/16]", 1)
	y = strings.Replace(y, "sites:\n", "  - name: lab\n    networks: [127.0.0.1]\n    secret: weak\n    allow_weak_secret: true\n    site: Wallfields\nsites:\n", 1)
	cfg, err := Parse([]byte(y), "test.yaml", "/tmp/override")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clients[0]
	if string(c.Secret) != goodSecret {
		t.Errorf("secret_file: whitespace not trimmed (len %d)", len(c.Secret))
	}
	if c.SecretSource != "file "+secretFile || c.RequireMessageAuthenticator {
		t.Errorf("client = %+v", c)
	}
	var nets []string
	for _, n := range c.Networks {
		nets = append(nets, n.String())
	}
	if want := []string{"10.0.0.0/24", "192.0.2.7/32", "2001:db8::/32", "10.9.0.0/16"}; !reflect.DeepEqual(nets, want) {
		t.Errorf("networks = %v, want %v", nets, want)
	}
	if string(cfg.Clients[1].Secret) != "weak" || cfg.Clients[1].SecretSource != "inline" {
		t.Error("allow_weak_secret did not accept a short secret")
	}
	if cfg.DataDir != "/tmp/override" {
		t.Errorf("DataDir = %q, want the override", cfg.DataDir)
	}
}

func TestDuplicateNames(t *testing.T) {
	y := strings.Replace(minimal, "sites:\n", "  - name: wlc\n    networks: [10.1.0.0/24]\n    secret: "+goodSecret+"\n    site: Wallfields\nsites:\n", 1)
	y = strings.Replace(y, "policy:\n", "  - name: Wallfields\n    vlans: {general: 5}\npolicy:\n", 1)
	_, err := Parse([]byte(y), "test.yaml", "")
	for _, w := range []string{
		`config: line 14: sites[1].name: duplicate site "Wallfields" (also sites[0])`,
		`config: line 7: clients[1].name: duplicate client "wlc" (also clients[0])`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

func TestTrustAnchorsAndTLS(t *testing.T) {
	dir := t.TempDir()
	root := testpki.NewRoot(t, "Council Root")
	caFile := root.WriteCert(t, dir, "ca")
	srv := root.IssueServer(t, "nacd.test", testpki.ECDSAP256)
	files := srv.WriteFiles(t, dir, "server")
	certFile, keyFile := files.Chain, files.Key

	y := minimal + fmt.Sprintf(`trust_anchors:
  - name: adcs
    il3: false
    ca_files: [%s]
    crls: [https://127.0.0.1/adcs.crl]
    crl_max_age: 36h
    stale_fail_closed: true
    oids:
      council_managed: [1.3.6.1.4.1.99999.1]
      staff: [1.3.6.1.4.1.99999.2]
tls:
  certificate: %s
  key: %s
  max_version: "1.2"
`, caFile, certFile, keyFile)
	cfg, err := Parse([]byte(y), "test.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NeedsBootstrap() {
		t.Error("NeedsBootstrap with anchors and a certificate configured")
	}
	a := cfg.TrustAnchors[0]
	if a.Name != "adcs" || a.IL3 || a.CRLRefresh != 5*time.Minute || a.CRLMaxAge != 36*time.Hour || !a.StaleFailClosed || a.RequireCRL {
		t.Errorf("anchor = %+v", a)
	}
	if !reflect.DeepEqual(a.OIDs.Staff, []string{"1.3.6.1.4.1.99999.2"}) || a.OIDs.Member != nil {
		t.Errorf("oids = %+v: only the listed OIDs may count", a.OIDs)
	}
	if len(cfg.TLS.Certificate.Certificate) != len(srv.Chain) || cfg.TLS.MaxVersion != tls.VersionTLS12 {
		t.Errorf("TLS = %+v", cfg.TLS)
	}
}

func TestPolicyPath(t *testing.T) {
	sites := map[string]string{"Wallfields": "sites[0]", "Hertford Theatre": "sites[1]", "A.B": "sites[2]"}
	tests := []struct{ in, want string }{
		{"rules[2].ownership", "policy.rules[2].match.ownership"},
		{"rules[0].roles[1]", "policy.rules[0].match.roles[1]"},
		{"rules[3].segment", "policy.rules[3].segment"},
		{"rules[10].session_timeout", "policy.rules[10].session_timeout"},
		{"sites.Hertford Theatre.vlans.il3", "sites[1].vlans.il3"},
		{"sites.A.B.vlans.guest", "sites[2].vlans.guest"},
		{"max_revocation_age", "policy.max_revocation_age"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := policyPath(tc.in, sites); got != tc.want {
				t.Errorf("policyPath(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(configs.Example)
	f.Add([]byte("clients: [\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", "")
		if err == nil && (cfg == nil || cfg.Policy == nil) {
			t.Fatal("nil config without an error")
		}
	})
}
