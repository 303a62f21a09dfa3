package freeradiustest

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// captureDir, when set, receives every eapol_test output of the tests (used
// to refresh internal/eapoltest/testdata with real captures).
var captureDir = os.Getenv("EAPOLTEST_CAPTURE_DIR")

func capture(t *testing.T, name string, r *eapoltest.Result) {
	if captureDir == "" || r == nil {
		return
	}
	if err := os.WriteFile(filepath.Join(captureDir, name+".txt"), []byte(r.Raw), 0o644); err != nil {
		t.Errorf("capture: %v", err)
	}
}

// TestEAPTLSAgainstFreeRADIUS proves the eapol_test harness against the
// reference server: real eapol_test, real FreeRADIUS 3.2, a testpki PKI.
func TestEAPTLSAgainstFreeRADIUS(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()

	root := testpki.NewRoot(t, "FR Test Root")
	inter := root.NewIntermediate(t, "FR Test Devices")
	server := inter.IssueServer(t, "radius.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")
	caFile := root.WriteCert(t, dir, "root")

	laptop := inter.IssueDevice(t, testpki.Device{CommonName: "laptop-1", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true}).WriteFiles(t, dir, "laptop")
	phone := inter.IssueDevice(t, testpki.Device{CommonName: "phone-1", Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff, KeyType: testpki.RSA2048}).WriteFiles(t, dir, "phone")
	bigLeaf := inter.IssueDevice(t, testpki.Device{CommonName: "big-1", Padding: 5000})
	big := bigLeaf.WriteFiles(t, dir, "big")
	revokedLeaf := inter.IssueDevice(t, testpki.Device{CommonName: "revoked-1"})
	revoked := revokedLeaf.WriteFiles(t, dir, "revoked")
	untrusted := testpki.NewRoot(t, "Other Root").IssueDevice(t, testpki.Device{CommonName: "laptop-1"}).WriteFiles(t, dir, "untrusted")

	// check_crl needs the CRL of the issuing CA (check_all_crl is off).
	now := time.Now()
	crlFile := filepath.Join(dir, "crl.pem")
	crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: inter.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), revokedLeaf.Cert.SerialNumber)})
	if err := os.WriteFile(crlFile, crlPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if bigLeaf.Cert.Raw == nil || len(bigLeaf.Cert.Raw) < 5000 {
		t.Fatalf("padded certificate is only %d bytes", len(bigLeaf.Cert.Raw))
	}

	srv := Start(t, Config{
		CACertFile:       caFile,
		ServerCertFile:   server.Chain,
		ServerKeyFile:    server.Key,
		CRLFile:          crlFile,
		FragmentSize:     500,
		VLANByCommonName: map[string]int{"laptop-1": 110, "phone-1": 120},
		DefaultVLAN:      199,
		SessionTimeout:   time.Hour,
	})

	type tc struct {
		name     string
		files    testpki.Files
		frag     int
		accept   bool
		vlan     string
		identity string
	}
	cases := []tc{
		{name: "council laptop", files: laptop, accept: true, vlan: "110", identity: "laptop-1"},
		{name: "personal phone rsa", files: phone, accept: true, vlan: "120", identity: "phone-1"},
		{name: "long chain fragment 500", files: big, frag: 500, accept: true, vlan: "199", identity: "big-1"},
		{name: "revoked", files: revoked, identity: "revoked-1"},
		{name: "untrusted root", files: untrusted, identity: "laptop-1"},
	}
	for _, ver := range []string{"1.2", "1.3"} {
		for _, c := range cases {
			t.Run("tls"+ver+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := eapoltest.Run(ctx, eapoltest.Options{
					Binary:       eapolTest,
					Server:       srv.Addr,
					Secret:       srv.Secret,
					CACert:       caFile,
					ClientCert:   c.files.Chain,
					ClientKey:    c.files.Key,
					Identity:     c.identity,
					TLSVersion:   ver,
					FragmentSize: c.frag,
					Timeout:      10 * time.Second,
					Attributes:   []eapoltest.Attribute{eapoltest.CalledStationID("AA-BB-CC-DD-EE-FF", "CouncilWiFi")},
				})
				capture(t, "freeradius-tls"+ver+"-"+strings.ReplaceAll(c.name, " ", "-"), r)
				if err != nil {
					t.Fatalf("eapol_test: %v", err)
				}
				if r.TLSVersion != ver {
					t.Errorf("negotiated TLS %q, want %q", r.TLSVersion, ver)
				}
				if !c.accept {
					if !r.Rejected() {
						t.Fatalf("want Access-Reject; got success=%v code=%q timedOut=%v", r.Success, r.Code, r.TimedOut)
					}
					return
				}
				if !r.Success {
					t.Fatalf("want SUCCESS; got code=%q timedOut=%v\n%s", r.Code, r.TimedOut, tail(r.Raw, 40))
				}
				if !r.MPPEKeysOK {
					t.Error("eapol_test did not report MPPE keys OK")
				}
				if err := r.CheckKeys(); err != nil {
					t.Error(err)
				}
				a := r.Accept
				if a.TunnelPrivateGroupID != c.vlan || a.TunnelType != eapoltest.TunnelTypeVLAN || a.TunnelMediumType != eapoltest.TunnelMediumIEEE802 {
					t.Errorf("VLAN attributes %q/%d/%d, want %q/13/6", a.TunnelPrivateGroupID, a.TunnelType, a.TunnelMediumType, c.vlan)
				}
				if a.UserName != c.identity {
					t.Errorf("User-Name %q, want %q", a.UserName, c.identity)
				}
				if a.SessionTimeout != 3600 {
					t.Errorf("Session-Timeout %d, want 3600", a.SessionTimeout)
				}
				if c.frag > 0 && (r.ClientFragments < 2 || r.ServerFragments < 2) {
					t.Errorf("fragments: client sent %d, server sent %d with the M flag; want >= 2 each way", r.ClientFragments, r.ServerFragments)
				}
			})
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
