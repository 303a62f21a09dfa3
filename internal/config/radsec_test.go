package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/pki"
)

// radsecClient is minimal with the client's RadSec fields added.
func radsecClient(fields string) string {
	return strings.Replace(minimal, "    site: Wallfields\n", "    site: Wallfields\n"+fields, 1)
}

func TestRadSecConfig(t *testing.T) {
	dir := t.TempDir()
	root := testpki.NewRoot(t, "NAS CA")
	caFile := root.WriteCert(t, dir, "nas-ca")
	srv := root.IssueServer(t, "radsec.nacd.test", testpki.ECDSAP256).WriteFiles(t, dir, "radsec")
	notPEM := writeFile(t, dir, "not-pem", "hello\n", 0o600)

	t.Run("enabled with every field", func(t *testing.T) {
		y := radsecClient("    radsec: true\n    radsec_identities: [wlc01.wallfields.example, 10.0.0.5]\n") + fmt.Sprintf(`listen:
  radsec: 127.0.0.1:12083
radsec:
  enabled: true
  ca_files: [%s]
  certificate: %s
  key: %s
  min_version: "1.3"
  idle_timeout: 45s
  max_connections: 10
  max_connections_per_client: 2
`, caFile, srv.Chain, srv.Key)
		cfg, err := Parse([]byte(y), "t.yaml", "")
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.RadSec
		if !r.Enabled || cfg.Listen.RadSec != "127.0.0.1:12083" || r.ClientCAs == nil || r.MinVersion != tls.VersionTLS13 ||
			r.IdleTimeout != 45*time.Second || r.MaxConnections != 10 || r.MaxConnectionsPerClient != 2 {
			t.Fatalf("RadSec = %+v, listen %q", r, cfg.Listen.RadSec)
		}
		if len(cfg.RadSecCertificate().Certificate) != 1 {
			t.Fatal("radsec.certificate not used")
		}
		c := cfg.Clients[0]
		if !c.RadSec || len(c.RadSecIdentities) != 2 || c.RadSecIdentities[1] != "10.0.0.5" {
			t.Fatalf("client = %+v", c)
		}
		if cfg.BootstrapRadSecCA() {
			t.Fatal("BootstrapRadSecCA with ca_files")
		}
		if err := cfg.CheckRadSec(); err != nil {
			t.Fatal(err) // tls.certificate is left to the bootstrap PKI, but radsec has its own
		}
		if a, ok := cfg.RadSecRevocation(); ok || len(a.CAFiles) != 0 {
			t.Fatalf("custom ca_files without crls: revocation anchor %+v, checked %v; want none", a, ok)
		}
	})

	crlFile := writeFile(t, dir, "nas.crl", string(root.CRL(t, 1, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))), 0o600)
	revocationCases := []struct {
		name        string
		fields      string
		wantCRLs    []string
		wantRequire bool
	}{
		{"crls from a file and a URL: required by default", "  crls: [" + crlFile + ", http://pki.herts.example/nas.crl]\n", []string{crlFile, "http://pki.herts.example/nas.crl"}, true},
		{"require_crl false", "  crls: [" + crlFile + "]\n  require_crl: false\n", []string{crlFile}, false},
	}
	for _, tt := range revocationCases {
		t.Run(tt.name, func(t *testing.T) {
			y := radsecClient("    radsec: true\n    radsec_identities: [wlc01]\n") + "radsec:\n  enabled: true\n  ca_files: [" + caFile + "]\n" + tt.fields
			cfg, err := Parse([]byte(y), "t.yaml", "")
			if err != nil {
				t.Fatal(err)
			}
			a, ok := cfg.RadSecRevocation()
			if !ok || a.Name != RadSecAnchorName || len(a.CAFiles) != 1 || a.CAFiles[0] != caFile || !slices.Equal(a.CRLs, tt.wantCRLs) ||
				a.RequireCRL != tt.wantRequire || !a.StaleFailClosed || a.Revocations != nil || a.OIDs.Validate() != nil {
				t.Fatalf("revocation anchor %+v, checked %v", a, ok)
			}
			if len(a.CRLs) == 1 { // files only (no network): pki loads the anchor
				if _, err := pki.NewTrustStore([]pki.AnchorConfig{a}); err != nil {
					t.Fatalf("the anchor does not load: %v", err)
				}
			}
		})
	}

	t.Run("nacd's own CA: its revocations", func(t *testing.T) {
		y := radsecClient("    radsec: true\n    radsec_identities: [wlc01]\n") + "radsec:\n  enabled: true\n"
		cfg, err := Parse([]byte(y), "t.yaml", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cfg.RadSecRevocation(); ok {
			t.Fatal("revocation anchor before the bootstrap PKI is known")
		}
		boot, err := pki.Bootstrap(t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.UseBootstrap(boot); err != nil {
			t.Fatal(err)
		}
		a, ok := cfg.RadSecRevocation()
		want := BootstrapAnchor(boot)
		if !ok || a.Name != RadSecAnchorName || !slices.Equal(a.CAFiles, want.CAFiles) || !slices.Equal(a.CRLs, want.CRLs) ||
			a.RequireCRL != want.RequireCRL || a.Revocations != want.Revocations || !a.StaleFailClosed || a.IL3 {
			t.Fatalf("revocation anchor %+v, checked %v; want the bootstrap anchor's data %+v", a, ok, want)
		}
		if len(a.CRLs) == 0 && a.Revocations == nil {
			t.Fatal("the bootstrap anchor has neither CRLs nor a revocation set")
		}
	})

	t.Run("defaults: nacd's own CA, EAP-TLS certificate, 127.0.0.1:2083", func(t *testing.T) {
		y := radsecClient("    radsec: true\n    radsec_identities: [wlc01]\n") + "radsec:\n  enabled: true\n"
		cfg, err := Parse([]byte(y), "t.yaml", "")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listen.RadSec != DefaultRadSecListen || cfg.RadSec.IdleTimeout != DefaultRadSecIdleTimeout ||
			cfg.RadSec.MaxConnections != DefaultRadSecMaxConnections || cfg.RadSec.MaxConnectionsPerClient != DefaultRadSecMaxConnectionsPerClient ||
			cfg.RadSec.MinVersion != tls.VersionTLS12 {
			t.Fatalf("defaults: %+v listen %q", cfg.RadSec, cfg.Listen.RadSec)
		}
		if !cfg.BootstrapRadSecCA() || !cfg.NeedsBootstrap() {
			t.Fatal("an empty ca_files must use nacd's own (bootstrap) CA")
		}
		if !errors.Is(cfg.CheckRadSec(), errNoRadSecCA) {
			t.Fatalf("CheckRadSec before bootstrap = %v", cfg.CheckRadSec())
		}
		boot, err := pki.Bootstrap(t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.UseBootstrap(boot); err != nil {
			t.Fatal(err)
		}
		if cfg.RadSec.ClientCAs == nil || cfg.RadSec.CAFiles[0] != boot.CACert || cfg.CheckRadSec() != nil {
			t.Fatalf("after bootstrap: %+v, %v", cfg.RadSec, cfg.CheckRadSec())
		}
		if len(cfg.RadSecCertificate().Certificate) == 0 || &cfg.RadSecCertificate().Certificate[0][0] != &cfg.TLS.Certificate.Certificate[0][0] {
			t.Fatal("RadSec does not present the EAP-TLS certificate by default")
		}
	})

	t.Run("disabled by default", func(t *testing.T) {
		cfg, err := Parse([]byte(minimal), "t.yaml", "")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.RadSec.Enabled || cfg.Listen.RadSec != "" || cfg.Clients[0].RadSec || cfg.BootstrapRadSecCA() {
			t.Fatalf("RadSec %+v listen %q", cfg.RadSec, cfg.Listen.RadSec)
		}
	})

	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"client radsec while disabled", radsecClient("    radsec: true\n    radsec_identities: [wlc01]\n"), "clients[0].radsec: is true but radsec.enabled is false"},
		{"client radsec without identities", radsecClient("    radsec: true\n") + "radsec: {enabled: true}\n", "clients[0].radsec_identities: required when radsec is true"},
		{"identities without radsec", radsecClient("    radsec_identities: [wlc01]\n"), "clients[0].radsec_identities: set but radsec is false"},
		{"blank identity", radsecClient("    radsec: true\n    radsec_identities: [\" wlc01\"]\n") + "radsec: {enabled: true}\n", "clients[0].radsec_identities[0]:"},
		{"listen.radsec while disabled", minimal + "listen: {radsec: 127.0.0.1:2083}\n", "listen.radsec: is set but radsec.enabled is false"},
		{"bad listen address", minimal + "listen: {radsec: nowhere}\nradsec: {enabled: true}\n", "listen.radsec: \"nowhere\" is not host:port"},
		{"missing CA file", minimal + "radsec: {enabled: true, ca_files: [/nonexistent/ca.pem]}\n", "radsec.ca_files[0]: cannot load"},
		{"CA file without PEM", minimal + "radsec: {enabled: true, ca_files: [" + notPEM + "]}\n", "radsec.ca_files[0]: cannot load"},
		{"certificate without key", minimal + "radsec: {enabled: true, certificate: " + srv.Chain + "}\n", "radsec.key: certificate is set but key is not"},
		{"key without certificate", minimal + "radsec: {enabled: true, key: " + srv.Key + "}\n", "radsec.certificate: key is set but certificate is not"},
		{"TLS 1.1", minimal + "radsec: {enabled: true, min_version: \"1.1\"}\n", "radsec.min_version: \"1.1\" is not a TLS version"},
		{"idle timeout too short", minimal + "radsec: {enabled: true, idle_timeout: 10ms}\n", "radsec.idle_timeout: must be at least 1s"},
		{"zero connections", minimal + "radsec: {enabled: true, max_connections: 0}\n", "radsec.max_connections: 0 is out of range"},
		{"per client above global", minimal + "radsec: {enabled: true, max_connections: 4, max_connections_per_client: 8}\n", "radsec.max_connections_per_client: 8 is above max_connections 4"},
		{"unknown field", minimal + "radsec: {enabled: true, port: 2083}\n", "radsec.port: unknown field"},
		{"crls with nacd's own CA", minimal + "radsec: {enabled: true, crls: [" + caFile + "]}\n", "radsec.crls: set but ca_files is not"},
		{"require_crl without crls", minimal + "radsec: {enabled: true, ca_files: [" + caFile + "], require_crl: true}\n", "radsec.require_crl: set but crls is not"},
		{"missing CRL file", minimal + "radsec: {enabled: true, ca_files: [" + caFile + "], crls: [/nonexistent/nas.crl]}\n", "radsec.crls[0]: cannot read"},
		{"CRL URL not http", minimal + "radsec: {enabled: true, ca_files: [" + caFile + "], crls: [\"ldap://dc01/nas.crl\"]}\n", "radsec.crls[0]: \"ldap://dc01/nas.crl\" is not an http(s) URL"},
		{"require_crl not a bool", minimal + "radsec: {enabled: true, ca_files: [" + caFile + "], crls: [" + caFile + "], require_crl: maybe}\n", "cannot unmarshal !!str `maybe` into bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", "")
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%v\ndoes not contain %q", err, tt.want)
			}
		})
	}
}
