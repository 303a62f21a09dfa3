package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// fixture is a council PKI (root -> intermediate -> devices) plus an
// external CA and an unrelated root, written to a temp dir.
type fixture struct {
	dir                 string
	root, inter         *testpki.CA
	rootFile, interFile string
	ext, extInter       *testpki.CA
	extRootFile         string
	extBundle           string // external root + intermediate in one PEM file
	other               *testpki.CA
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.root = testpki.NewRoot(t, "council root")
	f.inter = f.root.NewIntermediate(t, "council issuing")
	f.rootFile = f.root.WriteCert(t, f.dir, "council-root")
	f.interFile = f.inter.WriteCert(t, f.dir, "council-inter")
	f.ext = testpki.NewRoot(t, "ad cs root")
	f.extInter = f.ext.NewIntermediate(t, "ad cs issuing")
	f.extRootFile = f.ext.WriteCert(t, f.dir, "ext-root")
	f.extBundle = filepath.Join(f.dir, "ext-bundle.crt")
	writeFile(t, f.extBundle, testpki.CertPEM(f.ext.Cert, f.extInter.Cert))
	f.other = testpki.NewRoot(t, "other root")
	return f
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// crlFile writes a CRL of ca to dir/name and returns the path.
func (f *fixture) crlFile(t testing.TB, name string, ca *testpki.CA, number int64, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	writeFile(t, p, ca.CRL(t, number, thisUpdate, nextUpdate, revoked...))
	return p
}

var staffLaptop = testpki.Device{
	CommonName: "staff-laptop-1",
	Email:      "alice@eastherts.gov.uk",
	UUID:       "0F8FAD5B-D9CB-469F-A165-70867728950E",
	Ownership:  policy.OwnershipCouncilManaged,
	Role:       policy.RoleStaff,
	IL3:        true,
}

func TestVerifyClient(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	good := f.inter.IssueDevice(t, staffLaptop)
	revokedLeaf := f.inter.IssueDevice(t, testpki.Device{CommonName: "lost-phone", Ownership: policy.OwnershipPersonal, Role: policy.RoleMember})
	revokedInter := f.root.NewIntermediate(t, "council old issuing")
	underRevoked := revokedInter.IssueDevice(t, testpki.Device{CommonName: "under-revoked"})
	expired := f.inter.IssueDevice(t, testpki.Device{CommonName: "expired", NotBefore: now.Add(-2 * 365 * 24 * time.Hour), NotAfter: now.Add(-time.Hour)})
	notYet := f.inter.IssueDevice(t, testpki.Device{CommonName: "future", NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	serverOnly := f.inter.IssueDevice(t, testpki.Device{CommonName: "server-eku", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	anyOnly := f.inter.IssueDevice(t, testpki.Device{CommonName: "any-eku", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	stranger := f.other.IssueDevice(t, staffLaptop)
	extLeaf := f.extInter.IssueDevice(t, staffLaptop)

	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour), revokedInter.Cert.SerialNumber)
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour), revokedLeaf.Cert.SerialNumber)
	interCRLStale := f.crlFile(t, "inter-stale.crl", f.inter, 1, now.Add(-48*time.Hour), now.Add(-time.Hour))
	interCRLOld := f.crlFile(t, "inter-old.crl", f.inter, 1, now.Add(-3*time.Hour), now.Add(24*time.Hour))

	council := func(mod func(*AnchorConfig)) []AnchorConfig {
		a := AnchorConfig{
			Name: "council", IL3: true,
			CAFiles: []string{f.rootFile, f.interFile}, // a CRL's issuer must be in the CA files
			CRLs:    []string{rootCRL, interCRL},
			OIDs:    policy.DefaultOIDs(),
		}
		if mod != nil {
			mod(&a)
		}
		return []AnchorConfig{a}
	}
	twoAnchors := func() []AnchorConfig {
		return append(council(nil), AnchorConfig{
			Name: "ad-cs", IL3: false, CAFiles: []string{f.extBundle}, OIDs: policy.DefaultOIDs(),
		})
	}

	type want struct {
		status    policy.CertStatus
		anchor    string
		il3       bool
		checked   bool
		revoked   bool
		stale     bool
		source    string
		ownership policy.Ownership
	}
	okChecked := want{status: policy.CertOK, anchor: "council", il3: true, checked: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}
	tests := []struct {
		name    string
		anchors []AnchorConfig
		chain   []*x509.Certificate
		want    want
	}{
		{"good chain, peer sends intermediate", council(nil), good.Chain, okChecked},
		{"good chain, anchor file carries intermediate, peer sends leaf only", council(nil),
			[]*x509.Certificate{good.Cert}, okChecked},
		{"peer sends intermediate, anchor holds only the root and its CRL",
			council(func(a *AnchorConfig) { a.CAFiles, a.CRLs = []string{f.rootFile}, []string{rootCRL} }), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"leaf only and anchor lacks the intermediate",
			council(func(a *AnchorConfig) { a.CAFiles, a.CRLs = []string{f.rootFile}, []string{rootCRL} }), []*x509.Certificate{good.Cert},
			want{status: policy.CertUntrusted, ownership: policy.OwnershipPersonal}},
		{"empty chain", council(nil), nil, want{status: policy.CertInvalid, ownership: policy.OwnershipPersonal}},
		{"nil leaf", council(nil), []*x509.Certificate{nil}, want{status: policy.CertInvalid, ownership: policy.OwnershipPersonal}},
		{"nil intermediate", council(nil), []*x509.Certificate{good.Cert, nil}, want{status: policy.CertInvalid, ownership: policy.OwnershipPersonal}},
		{"leaf is a CA certificate", council(nil), []*x509.Certificate{f.inter.Cert}, want{status: policy.CertInvalid, ownership: policy.OwnershipPersonal}},
		{"expired leaf", council(nil), expired.Chain, want{status: policy.CertExpired, ownership: policy.OwnershipPersonal}},
		{"not yet valid leaf", council(nil), notYet.Chain, want{status: policy.CertNotYetValid, ownership: policy.OwnershipPersonal}},
		{"stranger from another root", council(nil), stranger.Chain, want{status: policy.CertUntrusted, ownership: policy.OwnershipPersonal}},
		{"serverAuth only", council(nil), serverOnly.Chain,
			want{status: policy.CertWrongEKU, anchor: "council", il3: true, ownership: policy.OwnershipPersonal}},
		{"anyExtendedKeyUsage only", council(nil), anyOnly.Chain,
			want{status: policy.CertWrongEKU, anchor: "council", il3: true, ownership: policy.OwnershipPersonal}},
		{"revoked leaf", council(nil), revokedLeaf.Chain,
			want{status: policy.CertRevoked, anchor: "council", il3: true, checked: true, revoked: true, source: "crl:council", ownership: policy.OwnershipPersonal}},
		{"revoked intermediate", council(nil), underRevoked.Chain,
			want{status: policy.CertRevoked, anchor: "council", il3: true, checked: true, revoked: true, source: "crl:council", ownership: policy.OwnershipPersonal}},
		{"CRL past NextUpdate, fail open", council(func(a *AnchorConfig) { a.CRLs = []string{rootCRL, interCRLStale} }), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, checked: true, stale: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"CRL past NextUpdate, StaleFailClosed", council(func(a *AnchorConfig) {
			a.CRLs = []string{rootCRL, interCRLStale}
			a.StaleFailClosed = true
		}), good.Chain,
			want{status: policy.CertRevocationStale, anchor: "council", il3: true, checked: true, stale: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"revoked beats stale", council(func(a *AnchorConfig) {
			a.CRLs = []string{rootCRL, f.crlFile(t, "inter-stale-revoked.crl", f.inter, 1, now.Add(-48*time.Hour), now.Add(-time.Hour), revokedLeaf.Cert.SerialNumber)}
			a.StaleFailClosed = true
		}), revokedLeaf.Chain,
			want{status: policy.CertRevoked, anchor: "council", il3: true, checked: true, revoked: true, stale: true, source: "crl:council", ownership: policy.OwnershipPersonal}},
		{"CRL older than max age", council(func(a *AnchorConfig) {
			a.CRLs = []string{rootCRL, interCRLOld}
			a.CRLMaxAge = 2 * time.Hour
		}), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, checked: true, stale: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"CRL within max age", council(func(a *AnchorConfig) {
			a.CRLs = []string{rootCRL, interCRLOld}
			a.CRLMaxAge = 4 * time.Hour
		}), good.Chain, okChecked},
		{"no CRL configured", council(func(a *AnchorConfig) { a.CRLs = nil }), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, ownership: policy.OwnershipCouncilManaged}},
		{"no CRL configured, StaleFailClosed without RequireCRL", council(func(a *AnchorConfig) {
			a.CRLs = nil
			a.StaleFailClosed = true
		}), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, ownership: policy.OwnershipCouncilManaged}},
		{"no CRL, RequireCRL", council(func(a *AnchorConfig) {
			a.CRLs = nil
			a.RequireCRL = true
		}), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, stale: true, ownership: policy.OwnershipCouncilManaged}},
		{"no CRL, RequireCRL and StaleFailClosed", council(func(a *AnchorConfig) {
			a.CRLs = nil
			a.RequireCRL = true
			a.StaleFailClosed = true
		}), good.Chain,
			want{status: policy.CertRevocationStale, anchor: "council", il3: true, stale: true, ownership: policy.OwnershipCouncilManaged}},
		{"intermediate's CRL only: intermediate itself unchecked", council(func(a *AnchorConfig) { a.CRLs = []string{interCRL} }), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"intermediate's CRL only, RequireCRL", council(func(a *AnchorConfig) {
			a.CRLs = []string{interCRL}
			a.RequireCRL = true
		}), good.Chain,
			want{status: policy.CertOK, anchor: "council", il3: true, stale: true, source: "crl:council", ownership: policy.OwnershipCouncilManaged}},
		{"two anchors: council device on il3 anchor", twoAnchors(), good.Chain, okChecked},
		{"two anchors: external device on non-il3 anchor", twoAnchors(), []*x509.Certificate{extLeaf.Cert},
			want{status: policy.CertOK, anchor: "ad-cs", il3: false, ownership: policy.OwnershipCouncilManaged}},
		{"external anchor with its own OIDs ignores nacd's", []AnchorConfig{{
			Name: "ad-cs", CAFiles: []string{f.extBundle},
			OIDs: policy.OIDs{CouncilManaged: []string{"1.3.6.1.4.1.311.21.8.1.1"}},
		}}, []*x509.Certificate{extLeaf.Cert},
			want{status: policy.CertOK, anchor: "ad-cs", ownership: policy.OwnershipPersonal}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := NewTrustStore(tc.anchors)
			if err != nil {
				t.Fatalf("NewTrustStore: %v", err)
			}
			id := ts.VerifyClient(tc.chain, now)
			got := want{
				status: id.Status, anchor: id.Anchor, il3: id.AnchorIL3,
				checked: id.Revocation.Checked, revoked: id.Revocation.Revoked, stale: id.Revocation.Stale,
				source: id.Revocation.Source, ownership: id.Ownership,
			}
			if got != tc.want {
				t.Errorf("VerifyClient:\n got  %+v\n want %+v", got, tc.want)
			}
			if len(tc.chain) > 0 && tc.chain[0] != nil {
				if id.Serial != tc.chain[0].SerialNumber.Text(16) {
					t.Errorf("Serial = %q, want %q", id.Serial, tc.chain[0].SerialNumber.Text(16))
				}
			}
			if id.Revocation.Checked && (id.Revocation.Age < time.Hour || id.Revocation.Age > 72*time.Hour) {
				t.Errorf("Revocation.Age = %v, want the age of the oldest CRL used", id.Revocation.Age)
			}
		})
	}
}

func TestVerifyClientAttributes(t *testing.T) {
	f := newFixture(t)
	leaf := f.inter.IssueDevice(t, staffLaptop)
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", IL3: true, CAFiles: []string{f.rootFile}, OIDs: policy.DefaultOIDs()}})
	if err != nil {
		t.Fatal(err)
	}
	id := ts.VerifyClient(leaf.Chain, time.Now())
	checks := []struct {
		name      string
		got, want any
	}{
		{"status", id.Status, policy.CertOK},
		{"common name", id.CommonName, "staff-laptop-1"},
		{"email", id.Email, "alice@eastherts.gov.uk"},
		{"device uuid", id.DeviceUUID, "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"ownership", id.Ownership, policy.OwnershipCouncilManaged},
		{"role", id.Role, policy.RoleStaff},
		{"clearance", id.ClearanceIL3, true},
		{"issuer", id.Issuer, f.inter.Cert.Subject.String()},
		{"not after", id.NotAfter.Equal(leaf.Cert.NotAfter), true},
		{"policy OIDs", len(id.PolicyOIDs), 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A chain that verifies through an intermediate valid at the time checked
// but not at now reports the intermediate's validity, not "untrusted".
func TestVerifyClientIntermediateValidity(t *testing.T) {
	f := newFixture(t)
	leaf := f.inter.IssueDevice(t, testpki.Device{CommonName: "long-lived", NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour)})
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile}}})
	if err != nil {
		t.Fatal(err)
	}
	// The intermediate (5y) has expired by then, the root (10y) and leaf not.
	id := ts.VerifyClient(leaf.Chain, time.Now().Add(6*365*24*time.Hour))
	if id.Status != policy.CertExpired {
		t.Errorf("Status = %q, want %q", id.Status, policy.CertExpired)
	}
}

func TestNewTrustStoreErrors(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	impostor := testpki.NewRoot(t, "council root") // same subject, other key
	badSig := f.crlFile(t, "impostor.crl", impostor, 1, now.Add(-time.Hour), now.Add(time.Hour))
	foreign := f.crlFile(t, "foreign.crl", f.other, 1, now.Add(-time.Hour), now.Add(time.Hour))
	garbage := filepath.Join(f.dir, "garbage.crl")
	writeFile(t, garbage, []byte("not a CRL"))
	notCA := filepath.Join(f.dir, "leaf.crt")
	writeFile(t, notCA, testpki.CertPEM(f.inter.IssueDevice(t, testpki.Device{}).Cert))
	empty := filepath.Join(f.dir, "empty.pem")
	writeFile(t, empty, []byte("nothing here\n"))
	deltaCRL := filepath.Join(f.dir, "delta.crl")
	writeFile(t, deltaCRL, crlWithExtensions(t, f.root, pkix.Extension{Id: oidExtDeltaCRLIndicator, Critical: true, Value: []byte{0x02, 0x01, 0x01}}))

	base := func(mod func(*AnchorConfig)) []AnchorConfig {
		a := AnchorConfig{Name: "council", CAFiles: []string{f.rootFile}}
		mod(&a)
		return []AnchorConfig{a}
	}
	tests := []struct {
		name     string
		anchors  []AnchorConfig
		wantErr  error
		contains []string
	}{
		{"no anchors", nil, nil, []string{"no trust anchors"}},
		{"empty name", base(func(a *AnchorConfig) { a.Name = "" }), nil, []string{"empty name"}},
		{"duplicate name", append(base(func(*AnchorConfig) {}), base(func(*AnchorConfig) {})...), nil, []string{`"council" configured twice`}},
		{"no CA files", base(func(a *AnchorConfig) { a.CAFiles = nil }), nil, []string{`"council"`, "no CA files"}},
		{"missing CA file", base(func(a *AnchorConfig) { a.CAFiles = []string{filepath.Join(f.dir, "nope.crt")} }), os.ErrNotExist, []string{`"council"`, "nope.crt"}},
		{"CA file without PEM", base(func(a *AnchorConfig) { a.CAFiles = []string{empty} }), nil, []string{"empty.pem", "no PEM CERTIFICATE"}},
		{"CA file holds a leaf", base(func(a *AnchorConfig) { a.CAFiles = []string{notCA} }), nil, []string{"leaf.crt", "not a CA"}},
		{"CRL with bad signature", base(func(a *AnchorConfig) { a.CRLs = []string{badSig} }), ErrCRLSignature, []string{`"council"`, "impostor.crl"}},
		{"CRL of a foreign issuer", base(func(a *AnchorConfig) { a.CRLs = []string{foreign} }), ErrCRLIssuer, []string{"foreign.crl", "other root"}},
		{"CRL garbage", base(func(a *AnchorConfig) { a.CRLs = []string{garbage} }), nil, []string{"garbage.crl", "parse CRL"}},
		{"missing CRL file", base(func(a *AnchorConfig) { a.CRLs = []string{filepath.Join(f.dir, "gone.crl")} }), os.ErrNotExist, []string{"gone.crl"}},
		{"delta CRL", base(func(a *AnchorConfig) { a.CRLs = []string{deltaCRL} }), ErrCRLUnsupported, []string{"delta"}},
		{"ldap CRL source", base(func(a *AnchorConfig) { a.CRLs = []string{"ldap://dc1/CN=crl"} }), ErrCRLSource, []string{"ldap"}},
		{"file URL CRL source", base(func(a *AnchorConfig) { a.CRLs = []string{"file:///etc/crl"} }), ErrCRLSource, []string{"file"}},
		{"bad OID mapping", base(func(a *AnchorConfig) { a.OIDs = policy.OIDs{Staff: []string{"not.an.oid"}} }), nil, []string{`"council"`, "staff"}},
		{"negative max age", base(func(a *AnchorConfig) { a.CRLMaxAge = -time.Second }), nil, []string{"negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := NewTrustStore(tc.anchors)
			if err == nil {
				t.Fatalf("NewTrustStore succeeded (%v), want an error", ts)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want errors.Is %v", err, tc.wantErr)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func crlWithExtensions(t testing.TB, ca *testpki.CA, exts ...pkix.Extension) []byte {
	t.Helper()
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
		ExtraExtensions: exts,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCRLScopeAndFormats(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, testpki.Device{CommonName: "d"})
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(time.Hour))
	pemCRL := filepath.Join(f.dir, "root.pem.crl")
	writeFile(t, pemCRL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: f.root.CRL(t, 1, now.Add(-time.Hour), now.Add(time.Hour))}))
	// IDP: SEQUENCE { onlyContainsUserCerts [1] TRUE }.
	userOnly := filepath.Join(f.dir, "root-user-only.crl")
	writeFile(t, userOnly, crlWithExtensions(t, f.root, pkix.Extension{Id: oidExtIssuingDistributionPoint, Critical: true, Value: []byte{0x30, 0x03, 0x81, 0x01, 0xff}}))
	// IDP: SEQUENCE { onlyContainsCACerts [2] TRUE }.
	caOnly := filepath.Join(f.dir, "root-ca-only.crl")
	writeFile(t, caOnly, crlWithExtensions(t, f.root, pkix.Extension{Id: oidExtIssuingDistributionPoint, Critical: true, Value: []byte{0x30, 0x03, 0x82, 0x01, 0xff}}))
	indirect := filepath.Join(f.dir, "root-indirect.crl")
	writeFile(t, indirect, crlWithExtensions(t, f.root, pkix.Extension{Id: oidExtIssuingDistributionPoint, Critical: true, Value: []byte{0x30, 0x03, 0x84, 0x01, 0xff}}))

	tests := []struct {
		name        string
		crls        []string
		wantErr     error
		wantChecked bool
	}{
		{"PEM root CRL and DER intermediate CRL", []string{pemCRL, interCRL}, nil, true},
		{"root CRL scoped to CA certificates covers the intermediate", []string{caOnly, interCRL}, nil, true},
		{"root CRL scoped to user certificates does not cover the intermediate", []string{userOnly, interCRL}, nil, false},
		{"indirect CRL refused", []string{indirect}, ErrCRLUnsupported, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: tc.crls}})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("NewTrustStore error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id := ts.VerifyClient(leaf.Chain, now)
			if id.Status != policy.CertOK || id.Revocation.Checked != tc.wantChecked {
				t.Errorf("Status %q Checked %v, want ok / %v", id.Status, id.Revocation.Checked, tc.wantChecked)
			}
		})
	}
}

// metricValue returns the value of the named metric with label anchor=a, and
// whether it exists.
func metricValue(t testing.TB, g prometheus.Gatherer, name, a string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if labelValue(m, "anchor") != a {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMetricsAndFresh(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-2*time.Hour), now.Add(time.Hour))
	next := now.Add(30 * time.Minute).Truncate(time.Second)
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), next, big.NewInt(7), big.NewInt(8), big.NewInt(9))
	reg := prometheus.NewPedanticRegistry()
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, interCRL}}}, WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name     string
		min, max float64
	}{
		{"nacd_pki_crl_revoked_entries", 3, 3},
		{"nacd_pki_crl_age_seconds", 7190, 7300},
		{"nacd_pki_crl_next_update_timestamp_seconds", float64(next.Unix()), float64(next.Unix())},
		{"nacd_pki_crl_refresh_errors_total", 0, 0},
	}
	for _, c := range checks {
		v, ok := metricValue(t, reg, c.name, "council")
		if c.name == "nacd_pki_crl_refresh_errors_total" {
			ok = true // a counter vector with no errors has no series yet
		}
		if !ok || v < c.min || v > c.max {
			t.Errorf("%s = %v (present %v), want [%v, %v]", c.name, v, ok, c.min, c.max)
		}
	}
	freshness := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"now", now, true},
		{"after the intermediate CRL's NextUpdate", next.Add(time.Second), false},
	}
	for _, c := range freshness {
		if got := ts.Fresh(c.at); got != c.want {
			t.Errorf("Fresh(%s) = %v, want %v (%v)", c.name, got, c.want, ts.CheckFresh(c.at))
		}
	}
	// Registering a second store on the same registry fails cleanly.
	if _, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile}}}, WithRegisterer(reg)); err == nil {
		t.Error("second store on the same registerer: want an error")
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, staffLaptop)
	extLeaf := f.extInter.IssueDevice(t, staffLaptop)
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", IL3: true, CAFiles: []string{f.rootFile}, OIDs: policy.DefaultOIDs()}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		anchors    []AnchorConfig
		wantErr    bool
		wantLeaf   policy.CertStatus
		wantExtern policy.CertStatus
	}{
		{"initial", nil, false, policy.CertOK, policy.CertUntrusted},
		{"add external anchor", []AnchorConfig{
			{Name: "council", IL3: true, CAFiles: []string{f.rootFile}},
			{Name: "ad-cs", CAFiles: []string{f.extBundle}},
		}, false, policy.CertOK, policy.CertOK},
		{"broken config keeps the old anchors", []AnchorConfig{
			{Name: "ad-cs", CAFiles: []string{filepath.Join(f.dir, "missing.crt")}},
		}, true, policy.CertOK, policy.CertOK},
		{"drop the council anchor", []AnchorConfig{
			{Name: "ad-cs", CAFiles: []string{f.extBundle}},
		}, false, policy.CertUntrusted, policy.CertOK},
	}
	for _, s := range steps {
		if s.anchors != nil {
			err := ts.Reload(s.anchors)
			if (err != nil) != s.wantErr {
				t.Fatalf("%s: Reload error %v, want error %v", s.name, err, s.wantErr)
			}
		}
		if got := ts.VerifyClient(leaf.Chain, now).Status; got != s.wantLeaf {
			t.Errorf("%s: council leaf %q, want %q", s.name, got, s.wantLeaf)
		}
		if got := ts.VerifyClient(extLeaf.Chain, now).Status; got != s.wantExtern {
			t.Errorf("%s: external leaf %q, want %q", s.name, got, s.wantExtern)
		}
	}
}

func TestRefreshFromFile(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, staffLaptop)
	other := f.inter.IssueDevice(t, testpki.Device{CommonName: "other"})
	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	impostor := testpki.NewRoot(t, "council issuing")
	reg := prometheus.NewPedanticRegistry()
	ts, err := NewTrustStore([]AnchorConfig{{
		Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, interCRL},
	}}, WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		crl        []byte // new content of inter.crl; nil: unchanged
		wantErr    error
		wantLeaf   policy.CertStatus
		wantOther  policy.CertStatus
		wantErrors float64
	}{
		{"initial", nil, nil, policy.CertOK, policy.CertOK, 0},
		{"revoke the leaf on disk", f.inter.CRL(t, 2, now, now.Add(24*time.Hour), leaf.Cert.SerialNumber), nil, policy.CertRevoked, policy.CertOK, 0},
		{"rollback to an older CRL refused", f.inter.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour)), ErrCRLRollback, policy.CertRevoked, policy.CertOK, 1},
		{"bad signature refused, last good kept", crlSignedBy(t, impostor, f.inter.Cert), ErrCRLSignature, policy.CertRevoked, policy.CertOK, 2},
		{"garbage refused, last good kept", []byte("garbage"), nil, policy.CertRevoked, policy.CertOK, 3},
		{"revoke the other too", f.inter.CRL(t, 3, now, now.Add(24*time.Hour), leaf.Cert.SerialNumber, other.Cert.SerialNumber), nil, policy.CertRevoked, policy.CertRevoked, 3},
	}
	for _, s := range steps {
		if s.crl != nil {
			writeFile(t, interCRL, s.crl)
			err := ts.Refresh(context.Background())
			if s.wantErr != nil && !errors.Is(err, s.wantErr) {
				t.Errorf("%s: Refresh error %v, want %v", s.name, err, s.wantErr)
			}
			if s.wantErrors == 0 && err != nil {
				t.Errorf("%s: Refresh error %v", s.name, err)
			}
		}
		if got := ts.VerifyClient(leaf.Chain, now).Status; got != s.wantLeaf {
			t.Errorf("%s: leaf %q, want %q", s.name, got, s.wantLeaf)
		}
		if got := ts.VerifyClient(other.Chain, now).Status; got != s.wantOther {
			t.Errorf("%s: other %q, want %q", s.name, got, s.wantOther)
		}
		if v, _ := metricValue(t, reg, "nacd_pki_crl_refresh_errors_total", "council"); v != s.wantErrors {
			t.Errorf("%s: refresh errors %v, want %v", s.name, v, s.wantErrors)
		}
	}
}

// crlSignedBy makes a CRL naming issuer but signed by ca's key.
func crlSignedBy(t testing.TB, ca *testpki.CA, issuer *x509.Certificate) []byte {
	t.Helper()
	fake := *ca.Cert
	fake.RawSubject = issuer.RawSubject
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(99), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
	}, &fake, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The refresh loop started with Start picks up a changed file with no call
// from the test.
func TestStartRefreshLoop(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, staffLaptop)
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	ts, err := NewTrustStore([]AnchorConfig{{
		Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{interCRL}, CRLRefresh: 10 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts.Start(ctx)
	ts.Start(ctx) // second call is a no-op
	writeFile(t, interCRL, f.inter.CRL(t, 2, now, now.Add(24*time.Hour), leaf.Cert.SerialNumber))
	deadline := time.Now().Add(20 * time.Second)
	for ts.VerifyClient(leaf.Chain, now).Status != policy.CertRevoked {
		if time.Now().After(deadline) {
			t.Fatal("revocation on disk not picked up by the refresh loop within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNextDue(t *testing.T) {
	now := time.Now()
	a := &anchor{refresh: 5 * time.Minute}
	fast := &anchor{refresh: 10 * time.Millisecond}
	src := func(c *loadedCRL) *crlSource {
		s := &crlSource{}
		if c != nil {
			s.cur.Store(c)
		}
		return s
	}
	tests := []struct {
		name string
		a    *anchor
		s    *crlSource
		want time.Duration
	}{
		{"not loaded: retry soon", a, src(nil), minRetry},
		{"fresh CRL: the interval", a, src(&loadedCRL{nextUpdate: now.Add(time.Hour)}), 5 * time.Minute},
		{"NextUpdate before the interval", a, src(&loadedCRL{nextUpdate: now.Add(2 * time.Minute)}), 2 * time.Minute},
		{"NextUpdate passed: not sooner than the retry floor", a, src(&loadedCRL{nextUpdate: now.Add(-time.Hour)}), minRetry},
		{"no NextUpdate: the interval", a, src(&loadedCRL{}), 5 * time.Minute},
		{"interval shorter than the floor", fast, src(nil), 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.nextDue(tc.s, now).Sub(now); got != tc.want {
				t.Errorf("nextDue in %v, want %v", got, tc.want)
			}
		})
	}
}

// Refreshing a source whose bytes did not change keeps the parsed CRL (no
// re-parse of a large CRL every interval) and is not an error.
func TestRefreshUnchangedKeepsParsedCRL(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{interCRL}}})
	if err != nil {
		t.Fatal(err)
	}
	src := ts.state.Load().anchors[0].sources[0]
	before := src.cur.Load()
	steps := []struct {
		name     string
		write    []byte
		wantSame bool
	}{
		{"unchanged bytes", nil, true},
		{"new CRL", f.inter.CRL(t, 2, now, now.Add(24*time.Hour)), false},
	}
	for _, s := range steps {
		if s.write != nil {
			writeFile(t, interCRL, s.write)
		}
		if err := ts.Refresh(context.Background()); err != nil {
			t.Fatalf("%s: Refresh: %v", s.name, err)
		}
		if got := src.cur.Load() == before; got != s.wantSame {
			t.Errorf("%s: same parsed CRL %v, want %v", s.name, got, s.wantSame)
		}
	}
}

// An intermediate whose EKUs exclude clientAuth cannot vouch for a device.
func TestVerifyClientIntermediateEKU(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	mkInter := func(name string, eku []x509.ExtKeyUsage) *testpki.CA {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
			ExtKeyUsage: eku,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, f.root.Cert, key.Public(), f.root.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return &testpki.CA{Cert: c, Key: key, Parent: f.root}
	}
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		eku  []x509.ExtKeyUsage
		want policy.CertStatus
	}{
		{"intermediate restricted to serverAuth", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, policy.CertWrongEKU},
		{"intermediate allowing clientAuth", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, policy.CertOK},
		{"intermediate allowing any", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, policy.CertOK},
		{"intermediate without EKU", nil, policy.CertOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := mkInter(tc.name, tc.eku).IssueDevice(t, staffLaptop)
			if got := ts.VerifyClient(leaf.Chain, now).Status; got != tc.want {
				t.Errorf("status %q, want %q", got, tc.want)
			}
		})
	}
}
