package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/herts-council/nacd/policy"
)

// TestProfileRoundTrip: for every ownership x role x clearance, what Issue
// writes is what policy.IdentityFromCertificate reads back.
func TestProfileRoundTrip(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ts := ctTrustStore(t, ca.CA)
	ownerships := []policy.Ownership{policy.OwnershipCouncilManaged, policy.OwnershipPersonal}
	roles := []policy.Role{policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor}
	for _, o := range ownerships {
		for _, r := range roles {
			for _, il3 := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/il3=%t", o, r, il3)
				t.Run(name, func(t *testing.T) {
					f := Facts{Email: "holder@eastherts.gov.uk", DeviceUUID: "8B5DF784-3DB1-469A-8D59-472AB69A48B4", DeviceName: "dev " + name,
						Ownership: o, Role: r, ClearanceIL3: il3}
					chain, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), f, "test")
					if err != nil {
						t.Fatalf("Issue: %v", err)
					}
					// Through DER, as a device would present it.
					leaf, err := x509.ParseCertificate(chain[0].Raw)
					if err != nil {
						t.Fatal(err)
					}
					id := policy.IdentityFromCertificate(leaf, policy.DefaultOIDs())
					if id.Ownership != o || id.Role != r || id.ClearanceIL3 != il3 {
						t.Fatalf("read back %s/%s/il3=%t, OIDs %v", id.Ownership, id.Role, id.ClearanceIL3, id.PolicyOIDs)
					}
					if id.Email != f.Email || id.DeviceUUID != "8b5df784-3db1-469a-8d59-472ab69a48b4" || id.CommonName != f.DeviceName {
						t.Fatalf("names: email %q uuid %q cn %q", id.Email, id.DeviceUUID, id.CommonName)
					}
					if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || leaf.IsCA {
						t.Fatalf("EKU %v IsCA %t", leaf.ExtKeyUsage, leaf.IsCA)
					}
					if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != ca.cfg.CRLURL ||
						len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != ca.cfg.OCSPURL {
						t.Fatalf("CDP %v OCSP %v", leaf.CRLDistributionPoints, leaf.OCSPServer)
					}
					if got := ts.VerifyClient(chain, time.Now()); got.Status != policy.CertOK || got.Role != r {
						t.Fatalf("VerifyClient: %s %s", got.Status, got.Role)
					}
				})
			}
		}
	}
}

// TestIssueValidity: NotBefore/NotAfter of what is issued (trap 1: step
// issues an expired zero-length certificate when validity is not set).
func TestIssueValidity(t *testing.T) {
	tests := []struct {
		name     string
		validity time.Duration // Facts.Validity
		device   time.Duration // CAConfig.DeviceValidity
		want     time.Duration
		wantErr  error
	}{
		{"default 365 days", 0, 0, DefaultDeviceValidity, nil},
		{"configured 30 days", 0, 30 * 24 * time.Hour, 30 * 24 * time.Hour, nil},
		{"per-certificate 7 days", 7 * 24 * time.Hour, 0, 7 * 24 * time.Hour, nil},
		{"beyond the claims maximum", 2 * DefaultDeviceValidity, 0, 0, ErrBadFacts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca := ctOpen(t, "bbolt", func(c *CAConfig) { c.DeviceValidity = tc.device })
			f := ctStaffFacts("alice@eastherts.gov.uk")
			f.Validity = tc.validity
			before := time.Now()
			chain, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), f, "test")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := chain[0]
			if c.NotBefore.After(before) || before.Sub(c.NotBefore) > 2*time.Minute {
				t.Fatalf("NotBefore %s, issued at %s", c.NotBefore, before)
			}
			if got := c.NotAfter.Sub(before); got < tc.want-time.Minute || got > tc.want+time.Minute {
				t.Fatalf("NotAfter %s is %s after issuance, want %s", c.NotAfter, got, tc.want)
			}
			rec, err := ca.Status(context.Background(), c.SerialNumber)
			if err != nil || !rec.NotAfter.Equal(c.NotAfter.UTC()) || !rec.NotBefore.Equal(c.NotBefore.UTC()) {
				t.Fatalf("inventory validity %s..%s, certificate %s..%s (%v)", rec.NotBefore, rec.NotAfter, c.NotBefore, c.NotAfter, err)
			}
		})
	}
}

// TestProvisionerClaims: the step provisioner loaded (trap 3) and carries
// device lifetimes in its claims (trap 4: MaxTLSDur defaults to 24h).
func TestProvisionerClaims(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	p, err := ca.auth.LoadProvisionerByName(provisionerName)
	if err != nil {
		t.Fatal(err)
	}
	jwk, ok := p.(*provisioner.JWK)
	if !ok {
		t.Fatalf("provisioner type %T", p)
	}
	if jwk.Claims == nil || jwk.Claims.MaxTLSDur == nil || jwk.Claims.MaxTLSDur.Duration < DefaultDeviceValidity {
		t.Fatalf("claims %+v: max TLS duration below the device lifetime", jwk.Claims)
	}
}

func TestIssueRefusesKeysAndCSRs(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	facts := ctStaffFacts("alice@eastherts.gov.uk")
	facts.DeviceUUID = "0c3b8a1e-62b4-4a7e-9d1c-3f5b2a9e8d70"
	uri := func(s string) []*url.URL { u, _ := url.Parse(s); return []*url.URL{u} }
	tests := []struct {
		name    string
		csr     *x509.CertificateRequest
		facts   Facts
		wantErr error
	}{
		{"rsa 1024", ctCSR(t, rsa1024, nil), facts, ErrWeakKey},
		{"ecdsa p224", ctCSR(t, p224, nil), facts, ErrWeakKey},
		{"ecdsa p521", ctCSR(t, p521, nil), facts, ErrWeakKey},
		{"ed25519", ctCSR(t, ed, nil), facts, ErrWeakKey},
		{"dns san", ctCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"evil.example"}}), facts, ErrCSRMismatch},
		{"other e-mail", ctCSR(t, nil, &x509.CertificateRequest{EmailAddresses: []string{"mallory@eastherts.gov.uk"}}), facts, ErrCSRMismatch},
		{"other device uri", ctCSR(t, nil, &x509.CertificateRequest{URIs: uri("urn:uuid:11111111-2222-4333-8444-555555555555")}), facts, ErrCSRMismatch},
		{"uri without facts uuid", ctCSR(t, nil, &x509.CertificateRequest{URIs: uri("urn:uuid:11111111-2222-4333-8444-555555555555")}), ctStaffFacts("alice@eastherts.gov.uk"), ErrCSRMismatch},
		{"no e-mail", ctCSR(t, nil, nil), Facts{Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff}, ErrBadFacts},
		{"display-name e-mail", ctCSR(t, nil, nil), Facts{Email: "Alice <alice@eastherts.gov.uk>", Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff}, ErrBadFacts},
		{"unknown role", ctCSR(t, nil, nil), Facts{Email: "a@b.uk", Ownership: policy.OwnershipPersonal, Role: "admin"}, ErrBadFacts},
		{"unknown ownership", ctCSR(t, nil, nil), Facts{Email: "a@b.uk", Ownership: "borrowed", Role: policy.RoleStaff}, ErrBadFacts},
		{"bad uuid", ctCSR(t, nil, nil), Facts{Email: "a@b.uk", DeviceUUID: "not-a-uuid", Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff}, ErrBadFacts},
		{"nil csr", nil, facts, ErrBadCSR},
		{"rsa 2048 accepted", ctCSR(t, rsa2048, nil), facts, nil},
		{"p384 accepted", ctCSR(t, p384, nil), facts, nil},
		{"matching sans accepted", ctCSR(t, nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"},
			EmailAddresses: []string{"ALICE@eastherts.gov.uk"}, URIs: uri("urn:uuid:0c3b8a1e-62b4-4a7e-9d1c-3f5b2a9e8d70")}), facts, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := ca.List(context.Background(), ListFilter{})
			if err != nil {
				t.Fatal(err)
			}
			chain, err := ca.Issue(context.Background(), tc.csr, tc.facts, "test")
			after, lerr := ca.List(context.Background(), ListFilter{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.wantErr == nil {
				if err != nil || len(after) != len(before)+1 {
					t.Fatalf("err %v, records %d -> %d", err, len(before), len(after))
				}
				if chain[0].Subject.CommonName != "laptop" {
					t.Fatalf("subject CN %q came from the CSR", chain[0].Subject.CommonName)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || chain != nil {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if len(after) != len(before) {
				t.Fatalf("a refused request left a record (%d -> %d)", len(before), len(after))
			}
		})
	}
}

func TestRenew(t *testing.T) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			ctx := context.Background()
			f := ctStaffFacts("carol@eastherts.gov.uk")
			chain, err := ca.Issue(ctx, ctCSR(t, nil, nil), f, "test")
			if err != nil {
				t.Fatal(err)
			}
			renewed, err := ca.Renew(ctx, chain[0], ctCSR(t, nil, nil), "device")
			if err != nil {
				t.Fatalf("Renew: %v", err)
			}
			a := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs())
			b := policy.IdentityFromCertificate(renewed[0], policy.DefaultOIDs())
			if a.Email != b.Email || a.DeviceUUID != b.DeviceUUID || a.Role != b.Role || a.Ownership != b.Ownership || a.ClearanceIL3 != b.ClearanceIL3 || a.Serial == b.Serial {
				t.Fatalf("renewed identity %+v differs from %+v", b, a)
			}
			rec, err := ca.Status(ctx, renewed[0].SerialNumber)
			if err != nil || rec.RenewedFrom != a.Serial {
				t.Fatalf("renewed record %+v %v", rec, err)
			}
			if err := ca.Revoke(ctx, a.Serial, ReasonSuperseded, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Renew(ctx, chain[0], ctCSR(t, nil, nil), "device"); !errors.Is(err, ErrRevoked) {
				t.Fatalf("renew of a revoked certificate: %v", err)
			}
			other := ctOpen(t, "bbolt")
			foreign, err := other.Issue(ctx, ctCSR(t, nil, nil), f, "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Renew(ctx, foreign[0], ctCSR(t, nil, nil), "device"); !errors.Is(err, ErrNotIssuedHere) {
				t.Fatalf("renew of another CA's certificate: %v", err)
			}
			var renewedEvents int
			for _, e := range ca.audit.All() {
				if e.Message == ActionCertificateRenewed && e.ContextMap()["certificate.renewed_from"] == a.Serial {
					renewedEvents++
				}
			}
			if renewedEvents != 1 {
				t.Fatalf("certificate-renewed audit events: %d", renewedEvents)
			}
		})
	}
}
