package radius

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

// x509Verifier is a small CertificateVerifier for tests: x509.Verify
// against one root, clientAuth EKU, identity from policy, and a revoked
// serial set.
type x509Verifier struct {
	roots   *x509.CertPool
	anchor  string
	mu      sync.Mutex
	revoked map[string]bool
}

func (v *x509Verifier) VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity {
	id := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs())
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		id.Status = policy.CertUntrusted
		return id
	}
	id.Anchor = v.anchor
	id.Status = policy.CertOK
	id.Revocation = policy.Revocation{Checked: true, Source: "test:" + v.anchor, Age: time.Minute}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.revoked[id.Serial] {
		id.Status = policy.CertRevoked
		id.Revocation.Revoked = true
	}
	return id
}

// testDevicePKI is a council root with an intermediate issuing devices, and
// a verifier that trusts the root.
type testDevicePKI struct {
	root     *testpki.CA
	issuing  *testpki.CA
	verifier *x509Verifier
}

func newDevicePKI(tb testing.TB) *testDevicePKI {
	root := testpki.NewRoot(tb, "council root")
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	return &testDevicePKI{
		root:     root,
		issuing:  root.NewIntermediate(tb, "council devices"),
		verifier: &x509Verifier{roots: pool, anchor: "council", revoked: map[string]bool{}},
	}
}

// newPeer returns a supplicant holding leaf, trusting the test server
// certificate, limited to TLS version v (0: default).
func newPeer(tb testing.TB, leaf *testpki.Leaf, v uint16) *eaptls.Peer {
	testEAPTLSConfig(tb) // ensure the server PKI exists
	pool := x509.NewCertPool()
	pool.AddCert(serverRoot.Cert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{leaf.TLSCertificate()},
		RootCAs:      pool,
		ServerName:   "radius.nacd.test",
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   v,
	}
	if v != 0 {
		cfg.MinVersion = v
	}
	p := eaptls.NewPeer(eaptls.PeerConfig{TLS: cfg, Identity: "anonymous@herts.example"})
	tb.Cleanup(p.Close)
	return p
}

// authenticate drives peer through the server over UDP until Access-Accept
// or Access-Reject, checking every reply. It returns the final reply and
// the request it answers.
func authenticate(tb testing.TB, c *net.UDPConn, peer *eaptls.Peer, extra ...tattr) (*radius.Packet, []byte) {
	tb.Helper()
	resp, err := peer.Handle(&eap.Packet{Code: eap.CodeRequest, Identifier: 0, Type: eap.TypeIdentity})
	if err != nil {
		tb.Fatalf("peer identity: %v", err)
	}
	var state []byte
	for id := 0; id < 64; id++ {
		req := accessRequest(tb, byte(id), resp, state, extra...)
		p := checkResponse(tb, exchange(tb, c, req), req)
		switch p.Code {
		case radius.CodeAccessChallenge:
			st := p.Get(attrState)
			if state != nil && !bytes.Equal(st, state) {
				tb.Fatalf("State changed mid-conversation")
			}
			state = st
			if resp, err = peer.Handle(replyEAP(tb, p)); err != nil {
				tb.Fatalf("peer: %v", err)
			}
		case radius.CodeAccessAccept, radius.CodeAccessReject:
			return p, req
		default:
			tb.Fatalf("unexpected code %v", p.Code)
		}
	}
	tb.Fatal("no decision after 64 round trips")
	return nil, nil
}

func TestEAPTLSOverUDP(t *testing.T) {
	pki := newDevicePKI(t)
	e := newEnv(t, envOptions{verifier: pki.verifier})
	c := e.dial(t, nasIP)

	staff := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-7", Email: "bob@herts.example", UUID: "0f3c2f6e-8a8e-4d0c-9d43-6b1f0f2b9c11", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
	visitor := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "visitor-phone", Role: policy.RoleVisitor})
	contractor := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "contractor-pc", Email: "carol@contractor.example", Role: policy.RoleContractor})
	revoked := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "lost-laptop", Email: "dave@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
	pki.verifier.mu.Lock()
	pki.verifier.revoked[revoked.Cert.SerialNumber.Text(16)] = true
	pki.verifier.mu.Unlock()
	stranger := testpki.NewRoot(t, "someone else").IssueDevice(t, testpki.Device{CommonName: "stranger", Role: policy.RoleStaff})
	bigChain := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "mdm-laptop", Email: "erin@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, Padding: 5000})

	tests := []struct {
		name    string
		leaf    *testpki.Leaf
		version uint16
		accept  bool
		vlan    int
		reason  string
		user    string
		alert   string
	}{
		{"staff laptop TLS 1.3", staff, tls.VersionTLS13, true, testVLANGen, string(policy.ReasonRuleMatched), "bob@herts.example", ""},
		{"staff laptop TLS 1.2", staff, tls.VersionTLS12, true, testVLANGen, string(policy.ReasonRuleMatched), "bob@herts.example", ""},
		{"visitor phone, no e-mail: CN as User-Name", visitor, tls.VersionTLS13, true, testVLANGuest, string(policy.ReasonRuleMatched), "visitor-phone", ""},
		{"large chain fragments both ways", bigChain, tls.VersionTLS13, true, testVLANGen, string(policy.ReasonRuleMatched), "erin@herts.example", ""},
		{"contractor: no rule, TLS 1.3", contractor, tls.VersionTLS13, false, 0, string(policy.ReasonNoRuleMatched), "", "access denied"},
		{"contractor: no rule, TLS 1.2", contractor, tls.VersionTLS12, false, 0, string(policy.ReasonNoRuleMatched), "", "access denied"},
		{"revoked laptop", revoked, tls.VersionTLS13, false, 0, string(policy.ReasonRevoked), "", "revoked certificate"},
		{"untrusted issuer", stranger, tls.VersionTLS13, false, 0, string(policy.ReasonUntrusted), "", "unknown certificate authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := e.accessLog.Len()
			peer := newPeer(t, tt.leaf, tt.version)
			p, req := authenticate(t, c, peer)
			entries := e.accessLog.All()[lines:]
			if len(entries) != 1 {
				t.Fatalf("%d access log lines, want 1", len(entries))
			}
			m := entries[0].ContextMap()
			if m[FieldReason] != tt.reason || m[FieldTLSVersion] != tlsVersionName(tt.version) || m[FieldSubject] != tt.leaf.Cert.Subject.String() {
				t.Fatalf("access log %v", m)
			}
			if !tt.accept {
				if p.Code != radius.CodeAccessReject {
					t.Fatalf("code %v, want Access-Reject", p.Code)
				}
				assertMinimalReject(t, p, true)
				if _, err := peer.Handle(replyEAP(t, p)); err == nil {
					t.Fatal("peer accepted an EAP-Failure")
				}
				if peer.GotSuccessIndication() {
					t.Fatal("TLS 1.3 success indication sent before a reject")
				}
				if m[FieldTLSAlert] != tt.alert || m[FieldResult] != ResultReject {
					t.Fatalf("access log alert %v result %v, want %q reject", m[FieldTLSAlert], m[FieldResult], tt.alert)
				}
				return
			}
			if p.Code != radius.CodeAccessAccept {
				t.Fatalf("code %v, want Access-Accept (log %v)", p.Code, m)
			}
			if _, err := peer.Handle(replyEAP(t, p)); err != nil {
				t.Fatalf("peer on EAP-Success: %v", err)
			}
			msk := peer.Result().MSK
			if len(msk) != 64 {
				t.Fatalf("peer MSK of %d bytes", len(msk))
			}
			var reqAuth [16]byte
			copy(reqAuth[:], req[4:20])
			keys := map[byte][]byte{}
			for _, v := range attrsOf(p, attrVendorSpecific) {
				if binary.BigEndian.Uint32(v) == 311 {
					keys[v[4]] = rfc2548Decrypt(t, v[6:], testSecret, reqAuth)
				}
			}
			if !bytes.Equal(keys[msMPPERecvKey], msk[:32]) || !bytes.Equal(keys[msMPPESendKey], msk[32:64]) {
				t.Fatal("MPPE keys do not decrypt to the peer's MSK halves (Recv=MSK[0:32], Send=MSK[32:64])")
			}
			if got := string(p.Get(attrTunnelPrivateGroupID)); got != itoa(tt.vlan) {
				t.Logf("log: %v", m)
				t.Fatalf("Tunnel-Private-Group-Id %q, want %d; peer sent %s", got, tt.vlan, tt.leaf.Cert.Subject)
			}
			if got := string(p.Get(attrUserName)); got != tt.user {
				t.Fatalf("User-Name %q, want %q", got, tt.user)
			}
			if m[FieldResult] != ResultAccept || m[FieldVLAN] != int64(tt.vlan) {
				t.Fatalf("access log %v", m)
			}
			assertNoSecrets(t, m, msk)
		})
	}
	if e.srv.convs.len() != 0 {
		t.Fatalf("%d conversations left after every authentication ended", e.srv.convs.len())
	}
	if n := testutil.CollectAndCount(e.srv.metrics.handshake); n != 2 {
		t.Fatalf("handshake histogram has %d series, want 2 (1.2 and 1.3)", n)
	}
}

func itoa(n int) string { return string(binaryDecimal(n)) }

func binaryDecimal(n int) []byte {
	if n == 0 {
		return []byte("0")
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return b
}
