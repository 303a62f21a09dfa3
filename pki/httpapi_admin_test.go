package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// enrolDevice enrols one device through the API and returns its chain and
// TLS credentials.
func (e *apiEnv) enrolDevice(t *testing.T, mods ...func(*Invite)) ([]*x509.Certificate, *tls.Certificate, Invitation) {
	t.Helper()
	inv := e.invite(mods...)
	csr, key := newCSR(t, nil, nil)
	r := e.do(nil, "POST", "/v1/enroll", inv.Token, "", csr)
	if r.code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", r.code, r.body)
	}
	chain := parseChain(t, r.body)
	return chain, tlsCert(chain, key), inv
}

func TestAdminAuthentication(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b, "nacd-admin-alice")
	_, adminCert, _ := e.enrolDevice(t, func(i *Invite) { i.DeviceName = "nacd-admin-alice" })
	_, revokedAdmin, _ := e.enrolDevice(t, func(i *Invite) { i.DeviceName = "nacd-admin-alice"; i.Email = "old@herts.example" })
	if _, err := b.auth.RevokeHolder(context.Background(), "old@herts.example", ReasonAffiliationChanged, "test"); err != nil {
		t.Fatal(err)
	}
	_, deviceCert, _ := e.enrolDevice(t, func(i *Invite) { i.DeviceName = "bob-phone" })
	foreign := testpki.NewRoot(t, "foreign").IssueDevice(t, testpki.Device{CommonName: "nacd-admin-alice"})
	foreignCert := foreign.TLSCertificate()

	cases := []struct {
		name    string
		cert    *tls.Certificate
		bearer  string
		code    int
		tlsFail bool
	}{
		{name: "no certificate, no token", code: 401},
		{name: "wrong admin token", bearer: "nacdadm_wrong-wrong-wrong-wrong-wrong-wrong", code: 401},
		{name: "an enrolment-shaped token", bearer: tokenPrefix + strings.Repeat("a", 43), code: 401},
		{name: "device certificate", cert: deviceCert, code: 403},
		{name: "revoked admin certificate", cert: revokedAdmin, code: 403},
		{name: "certificate of another CA (not sent, or refused)", cert: &foreignCert, code: 401, tlsFail: true},
		{name: "admin certificate", cert: adminCert, code: 200},
		{name: "admin token", bearer: e.adminToken, code: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(tc.cert)
			req, _ := http.NewRequest("GET", e.url+"/v1/admin/certificates?kind=device", nil)
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := c.Do(req)
			if tc.tlsFail && err != nil {
				return // refused in the handshake: fine too
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code == 200 {
				var lr ListResponse
				if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil || len(lr.Certificates) != 3 {
					t.Fatalf("list: %v, %d records", err, len(lr.Certificates))
				}
				if lr.Certificates[0].Certificate != nil {
					t.Fatal("list returns certificate DER")
				}
			}
		})
	}
	if n := e.auditCount("admin-refused", ""); n < 5 {
		t.Fatalf("admin-refused audit records: %d, want 5 or 6", n)
	}
	// Who did it is in the audit record of an admin action.
	var bys []string
	for _, l := range e.audit.FilterMessage("admin-list").All() {
		bys = append(bys, l.ContextMap()["user.name"].(string))
	}
	if len(bys) != 2 || !strings.HasPrefix(bys[0], "admin-cert:nacd-admin-alice/") || !strings.HasPrefix(bys[1], "admin-token@127.0.0.1:") {
		t.Fatalf("admin-list by %q", bys)
	}
}

func TestAdminTokenFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", AdminTokenFileName)
	tok, err := EnsureAdminToken(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v, want 0600", st.Mode(), err)
	}
	again, err := EnsureAdminToken(p)
	if err != nil || again != tok {
		t.Fatalf("second EnsureAdminToken changed the token: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAdminToken(p); err == nil {
		t.Fatal("a world-readable admin token file was accepted")
	}
}

func TestAdminInviteIssueRevokeList(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testAdminInviteIssueRevokeList(t, b) })
}

func testAdminInviteIssueRevokeList(t *testing.T, b backend) {
	e := newAPIEnv(t, b)
	admin := e.adminToken

	// Invite through the API (what `nacd enroll invite` does).
	r := e.do(nil, "POST", "/v1/admin/tokens", admin, "application/json",
		[]byte(`{"email":"erin@herts.example","role":"member","ownership":"personal","device_name":"erin-tablet","valid":"2h"}`))
	if r.code != 201 {
		t.Fatalf("invite: %d %s", r.code, r.body)
	}
	var inv InviteResponse
	if err := json.Unmarshal(r.body, &inv); err != nil || inv.Token == "" || inv.DeviceUUID == "" || !strings.Contains(inv.URL, "/enroll?token=") {
		t.Fatalf("invite response %s: %v", r.body, err)
	}
	csr, _ := newCSR(t, nil, nil)
	if r := e.do(nil, "POST", "/v1/enroll", inv.Token, "", csr); r.code != 201 {
		t.Fatalf("enrol with the API's token: %d %s", r.code, r.body)
	}
	for _, bad := range []string{
		`{"email":"erin@herts.example","role":"admin","ownership":"personal"}`,
		`{"email":"Erin <erin@herts.example>","role":"member","ownership":"personal"}`,
		`{"email":"erin@herts.example","role":"member","ownership":"personal","clearance_il3":true}`,
		`{"email":"erin@herts.example","role":"member","ownership":"personal","valid":"9999h"}`,
	} {
		if r := e.do(nil, "POST", "/v1/admin/tokens", admin, "application/json", []byte(bad)); r.code != 400 {
			t.Fatalf("invite %s: %d, want 400", bad, r.code)
		}
	}

	// Issue for a council-managed device from a CSR.
	csrPEM, _ := newCSR(t, nil, nil)
	body, _ := json.Marshal(IssueRequest{Email: "erin@herts.example", Role: "member", Ownership: "council-managed",
		DeviceName: "erin-laptop", DeviceUUID: "6f1c2b7e-9d7a-4d0e-8f55-0c2a0f6d1e11", CSR: string(csrPEM)})
	r = e.do(nil, "POST", "/v1/admin/issue", admin, "application/json", body)
	if r.code != 201 {
		t.Fatalf("issue: %d %s", r.code, r.body)
	}
	var ir IssueResponse
	if err := json.Unmarshal(r.body, &ir); err != nil || ir.DeviceUUID != "6f1c2b7e-9d7a-4d0e-8f55-0c2a0f6d1e11" {
		t.Fatalf("issue response %s", r.body)
	}
	chain := parseChain(t, []byte(ir.Chain))
	if id := e.trustStore().VerifyClient(chain, chain[0].NotBefore.Add(1)); id.Ownership != policy.OwnershipCouncilManaged || id.CommonName != "erin-laptop" {
		t.Fatalf("issued identity %+v", id)
	}

	// Another holder's device, to see that revoke-by-holder is precise.
	e.enrolDevice(t, func(i *Invite) { i.Email = "frank@herts.example" })

	cases := []struct {
		name    string
		body    string
		code    int
		revoked int
	}{
		{name: "two selectors", body: `{"serial":"01","holder":"erin@herts.example"}`, code: 400},
		{name: "no selector", body: `{"reason":"superseded"}`, code: 400},
		{name: "bad reason", body: `{"holder":"erin@herts.example","reason":"bored"}`, code: 400},
		{name: "unknown holder", body: `{"holder":"nobody@herts.example","reason":"affiliationChanged"}`, code: 404},
		{name: "member leaves office: every device of the holder", body: `{"holder":"ERIN@herts.example","reason":"affiliationChanged"}`, code: 200, revoked: 2},
		{name: "again: nothing left to revoke", body: `{"holder":"erin@herts.example","reason":"affiliationChanged"}`, code: 200, revoked: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(nil, "POST", "/v1/admin/revoke", admin, "application/json", []byte(tc.body))
			if r.code != tc.code {
				t.Fatalf("revoke %s: %d %s", tc.body, r.code, r.body)
			}
			if tc.code == 200 {
				var rr RevokeResponse
				if err := json.Unmarshal(r.body, &rr); err != nil || len(rr.Revoked) != tc.revoked {
					t.Fatalf("revoked %s, want %d", r.body, tc.revoked)
				}
			}
		})
	}
	r = e.do(nil, "GET", "/v1/admin/certificates?holder=erin@herts.example&status=revoked", admin, "", nil)
	var lr ListResponse
	if err := json.Unmarshal(r.body, &lr); err != nil || len(lr.Certificates) != 2 {
		t.Fatalf("list revoked: %d %s", r.code, r.body)
	}
	r = e.do(nil, "GET", "/v1/admin/certificates?status=valid&kind=device", admin, "", nil)
	if err := json.Unmarshal(r.body, &lr); err != nil || len(lr.Certificates) != 1 || lr.Certificates[0].Email != "frank@herts.example" {
		t.Fatalf("list valid: %d %s", r.code, r.body)
	}
	if r := e.do(nil, "GET", "/v1/admin/certificates?expiring=soon", admin, "", nil); r.code != 400 {
		t.Fatalf("bad expiring filter: %d", r.code)
	}
	if n := len(e.audit.FilterMessage("admin-revoke").All()); n != 3 {
		t.Fatalf("admin-revoke audit records %d, want 3 (refused and done)", n)
	}
}

func TestRenewOverMTLS(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	chain, cert, inv := e.enrolDevice(t)
	newCSRPEM, _ := newCSR(t, nil, nil)

	r := e.do(e.client(cert), "POST", "/v1/renew", "", "", newCSRPEM)
	if r.code != 201 {
		t.Fatalf("renew: %d %s", r.code, r.body)
	}
	renewed := parseChain(t, r.body)
	if renewed[0].SerialNumber.Cmp(chain[0].SerialNumber) == 0 {
		t.Fatal("renewal returned the same serial")
	}
	checkEnrolled(t, e, renewed, inv)

	if r := e.do(nil, "POST", "/v1/renew", "", "", newCSRPEM); r.code != 401 {
		t.Fatalf("renew without a client certificate: %d", r.code)
	}
	weak := tamperCSR(t, "x")
	if r := e.do(e.client(cert), "POST", "/v1/renew", "", "", weak); r.code != 400 || r.err.Error != "csr_signature" {
		t.Fatalf("renew with a bad CSR: %d %q", r.code, r.err.Error)
	}
	if err := b.auth.Revoke(context.Background(), hexSerial(chain[0]), ReasonKeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	if r := e.do(e.client(cert), "POST", "/v1/renew", "", "", newCSRPEM); r.code != 403 || r.err.Error != "revoked" {
		t.Fatalf("renew with a revoked certificate: %d %q", r.code, r.err.Error)
	}
}
