package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

func TestBootstrapCreatesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nacd-data")
	now := time.Now()
	r, err := Bootstrap(dir, now)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if !r.Created {
		t.Error("first call: Created = false")
	}
	modes := []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700},
		{filepath.Join(dir, "pki"), 0o700},
		{filepath.Join(dir, "demo"), 0o700},
		{r.CAKey, 0o600},
		{r.ServerKey, 0o600},
		{r.Demo["staff-laptop"].Key, 0o600},
		{r.Demo["member-tablet"].Key, 0o600},
		{r.CACert, 0o644},
		{r.CRL, 0o644},
	}
	for _, m := range modes {
		st, err := os.Stat(m.path)
		if err != nil {
			t.Errorf("stat %s: %v", m.path, err)
			continue
		}
		if st.Mode().Perm() != m.want {
			t.Errorf("%s: mode %v, want %v", m.path, st.Mode().Perm(), m.want)
		}
	}
	certChecks := []struct {
		name string
		ok   bool
	}{
		{"CA is a CA named nacd local CA", r.CA.IsCA && r.CA.Subject.CommonName == BootstrapCAName},
		{"CA valid ~10 years", r.CA.NotAfter.Sub(now) > 9*365*24*time.Hour},
		{"server has serverAuth", len(r.Server.ExtKeyUsage) == 1 && r.Server.ExtKeyUsage[0] == x509.ExtKeyUsageServerAuth},
		{"server SAN nacd.local", len(r.Server.DNSNames) > 0 && r.Server.DNSNames[0] == BootstrapServerName},
		{"server valid ~1 year", r.Server.NotAfter.Sub(now) > 360*24*time.Hour && r.Server.NotAfter.Sub(now) < 370*24*time.Hour},
		{"server signed by CA", r.Server.CheckSignatureFrom(r.CA) == nil},
		{"two demo devices", len(r.DemoCerts) == 2},
	}
	for _, c := range certChecks {
		if !c.ok {
			t.Errorf("%s: false", c.name)
		}
	}
	crl1, err := os.ReadFile(r.CRL)
	if err != nil {
		t.Fatal(err)
	}

	again, err := Bootstrap(dir, now.Add(time.Hour))
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	same := []struct {
		name string
		a, b *x509.Certificate
	}{
		{"CA", r.CA, again.CA},
		{"server", r.Server, again.Server},
		{"staff-laptop", r.DemoCerts["staff-laptop"], again.DemoCerts["staff-laptop"]},
		{"member-tablet", r.DemoCerts["member-tablet"], again.DemoCerts["member-tablet"]},
	}
	for _, s := range same {
		if s.b == nil || !s.a.Equal(s.b) {
			t.Errorf("second call: %s certificate changed", s.name)
		}
	}
	if again.Created {
		t.Error("second call: Created = true")
	}
	if crl2, _ := os.ReadFile(r.CRL); !bytes.Equal(crl1, crl2) {
		t.Error("second call within the CRL's half-life rewrote the CRL")
	}
	// Past half the CRL's life, the CRL is renewed with a higher number.
	later := now.Add(4 * 24 * time.Hour)
	if _, err := Bootstrap(dir, later); err != nil {
		t.Fatalf("Bootstrap 4 days later: %v", err)
	}
	crl3, _ := os.ReadFile(r.CRL)
	c, err := parseCRL(crl3, r.CRL, []*x509.Certificate{r.CA})
	if err != nil {
		t.Fatalf("renewed CRL: %v", err)
	}
	if c.number.Int64() != 2 || !c.thisUpdate.Equal(later.Truncate(time.Second)) {
		t.Errorf("renewed CRL: number %v thisUpdate %v, want 2 at %v", c.number, c.thisUpdate, later)
	}
}

func TestBootstrapDemoDevicesVerify(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	r, err := Bootstrap(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTrustStore([]AnchorConfig{r.Anchor()})
	if err != nil {
		t.Fatalf("NewTrustStore on the bootstrap CA: %v", err)
	}
	tests := []struct {
		name      string
		ownership policy.Ownership
		role      policy.Role
		il3       bool
		email     string
	}{
		{"staff-laptop", policy.OwnershipCouncilManaged, policy.RoleStaff, true, "alice@eastherts.gov.uk"},
		{"member-tablet", policy.OwnershipPersonal, policy.RoleMember, false, "bob@eastherts.gov.uk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := readCertFile(r.Demo[tc.name].Cert)
			if err != nil {
				t.Fatal(err)
			}
			id := ts.VerifyClient(certs, now)
			if id.Status != policy.CertOK || id.Anchor != "nacd-local" || !id.AnchorIL3 {
				t.Errorf("status %q anchor %q il3 %v, want ok nacd-local true", id.Status, id.Anchor, id.AnchorIL3)
			}
			if !id.Revocation.Checked || id.Revocation.Stale || id.Revocation.Revoked {
				t.Errorf("revocation %+v, want checked, fresh, not revoked", id.Revocation)
			}
			if id.Ownership != tc.ownership || id.Role != tc.role || id.ClearanceIL3 != tc.il3 || id.Email != tc.email {
				t.Errorf("identity %s/%s/il3=%v/%s, want %s/%s/il3=%v/%s",
					id.Ownership, id.Role, id.ClearanceIL3, id.Email, tc.ownership, tc.role, tc.il3, tc.email)
			}
			if len(id.DeviceUUID) != 36 || id.CommonName != tc.name {
				t.Errorf("device uuid %q cn %q", id.DeviceUUID, id.CommonName)
			}
		})
	}
	// The server certificate is not a device certificate.
	if id := ts.VerifyClient([]*x509.Certificate{r.Server}, now); id.Status != policy.CertWrongEKU {
		t.Errorf("server certificate as a client: %q, want %q", id.Status, policy.CertWrongEKU)
	}
	// After the CRL's 7 days without a Bootstrap call it is stale.
	if id := ts.VerifyClient([]*x509.Certificate{r.DemoCerts["staff-laptop"]}, now.Add(8*24*time.Hour)); !id.Revocation.Stale {
		t.Error("8 days later: revocation not stale")
	}
}

func TestBootstrapRefusesBadDirs(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, r *BootstrapResult)
		wantErr string
	}{
		{"demo key missing", func(t *testing.T, r *BootstrapResult) {
			must(t, os.Remove(r.Demo["member-tablet"].Key))
		}, "half-populated"},
		{"CA certificate missing, rest present", func(t *testing.T, r *BootstrapResult) {
			must(t, os.Remove(r.CACert))
		}, "half-populated"},
		{"server key swapped for another key", func(t *testing.T, r *BootstrapResult) {
			data, err := os.ReadFile(r.Demo["staff-laptop"].Key)
			must(t, err)
			must(t, os.WriteFile(r.ServerKey, data, 0o600))
		}, "does not match"},
		{"CA key readable by others", func(t *testing.T, r *BootstrapResult) {
			must(t, os.Chmod(r.CAKey, 0o644))
		}, "chmod 600"},
		{"demo certificate from another CA", func(t *testing.T, r *BootstrapResult) {
			other, err := Bootstrap(t.TempDir(), time.Now())
			must(t, err)
			for _, f := range [][2]string{{other.Demo["staff-laptop"].Cert, r.Demo["staff-laptop"].Cert}, {other.Demo["staff-laptop"].Key, r.Demo["staff-laptop"].Key}} {
				data, err := os.ReadFile(f[0])
				must(t, err)
				must(t, os.WriteFile(f[1], data, 0o600))
			}
		}, "not signed by"},
		{"CA certificate is garbage", func(t *testing.T, r *BootstrapResult) {
			must(t, os.WriteFile(r.CACert, []byte("garbage"), 0o644))
		}, "ca.crt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r, err := Bootstrap(dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, r)
			_, err = Bootstrap(dir, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Bootstrap on a damaged dir: error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
