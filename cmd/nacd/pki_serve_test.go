package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/pki"
)

// TestServePKIListener: nacd serve in process on the example
// configuration (nacd's own CA, listen.pki on a free port, the loopback
// NAS with dynauth: coa at a test NAS). `nacd enroll invite` goes through
// the running daemon's admin API (serve holds the CA's store); the device
// enrols over HTTPS and authenticates on general; after its accounting
// Start, a reload that moves members to guest sends a CoA-Request for the
// live session; a revocation through the admin API sends a
// Disconnect-Request for it, and the device's next authentication is
// rejected as revoked.
func TestServePKIListener(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	accessLog := filepath.Join(dir, "access.log")
	secret := "serve-pki-listener-secret-0123456789"
	nas := newDynNAS(t, secret)
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pkiAddr := freeAddr(t, "tcp") // a fixed port: certificates name it
	const memberRule = "        roles: [member]\n      segment: general\n"
	base := replaceAll(t, string(example),
		"127.0.0.1:1812 ", "127.0.0.1:0 ",
		"127.0.0.1:1813 ", "127.0.0.1:0 ",
		"127.0.0.1:9812 ", "127.0.0.1:0 ",
		"127.0.0.1:9443 ", pkiAddr+" ",
		"    coa_port: 3799 ", "    coa_port: "+strconv.Itoa(nas.port())+" ",
		"    dynauth: disconnect ", "    dynauth: coa ",
		"secret_file: ./nacd-data/radius-secret", "secret: "+strconv.Quote(secret),
		"data_dir: ./nacd-data", "data_dir: "+dataDir,
		"access_log: stdout", "access_log: "+accessLog,
		memberRule, memberRule,
	)
	cfgPath := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfgPath, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	info, _ := startServe(t, cfgPath)
	if info.PKI != pkiAddr {
		t.Fatalf("PKI listener on %q, want %q", info.PKI, pkiAddr)
	}
	pkiURL := "https://" + info.PKI

	// the listener's certificate (the EAP-TLS one, from the CA) names
	// 127.0.0.1: plain crypto/tls verification against the CA root passes
	root, err := os.ReadFile(pki.CARootFile(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(root)
	strict := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	if resp, err := strict.Get(pkiURL + "/ca.crt"); err != nil {
		t.Errorf("HTTPS to %s with the CA root and standard verification: %v", pkiURL, err)
	} else {
		resp.Body.Close()
	}

	// invite through the running daemon, enrol over HTTPS
	inv, _ := inviteJSON(t, "--data-dir", dataDir, "--server", pkiURL,
		"--email", "cllr.smith@herts.example", "--role", "member", "--ownership", "personal", "--device-name", "smith-phone")
	chain, key := enrolWithKey(t, dataDir, pkiURL, inv.Token)
	chainFile, keyFile := filepath.Join(dir, "device-chain.pem"), filepath.Join(dir, "device.key")
	writePEM(t, chainFile, "CERTIFICATE", chain[0].Raw, chain[1].Raw)
	writePEM(t, keyFile, "PRIVATE KEY", key)
	crlURL := "http://" + pkiAddr + "/crl"
	if c := chain[0]; !slices.Equal(c.CRLDistributionPoints, []string{crlURL}) || !slices.Equal(c.OCSPServer, []string{"http://" + pkiAddr + "/ocsp"}) {
		t.Errorf("issued certificate names CRL %q and OCSP %q, want the PKI listener's", c.CRLDistributionPoints, c.OCSPServer)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eapol := func() *eapoltest.Result {
		t.Helper()
		res, err := eapoltest.Run(ctx, eapoltest.Options{Binary: eapolTest, Server: info.RADIUSAuth, Secret: secret,
			ClientCert: chainFile, ClientKey: keyFile, ClientIP: "127.0.0.1", MAC: "02:00:00:00:00:77", Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("eapol_test: %v", err)
		}
		return res
	}
	res := eapol()
	if !res.Success || res.Accept == nil || len(res.Accept.Class) == 0 {
		t.Fatalf("enrolled device not accepted: %s\n%s", res.Code, res.Raw)
	}
	if got := res.Accept.TunnelPrivateGroupID; got != "110" { // Wallfields general
		t.Fatalf("VLAN %q, want 110", got)
	}

	// the NAS's accounting Start, echoing the Accept's Class
	start := radius.New(radius.CodeAccountingRequest, []byte(secret))
	start.Add(40, radius.NewInteger(1)) // Acct-Status-Type Start
	start.Add(44, radius.Attribute("pki-0001"))
	nasIP, _ := radius.NewIPAddr([]byte{127, 0, 0, 1})
	start.Add(4, nasIP)
	start.Add(1, radius.Attribute("cllr.smith@herts.example"))
	start.Add(31, radius.Attribute("02-00-00-00-00-77"))
	start.Add(25, radius.Attribute(res.Accept.Class[0]))
	if resp, err := radius.Exchange(ctx, start, info.RADIUSAcct); err != nil || resp.Code != radius.CodeAccountingResponse {
		t.Fatalf("accounting Start: %v", err)
	}

	steps := []struct {
		name string
		do   func(t *testing.T)
		code radius.Code
		vlan string // Tunnel-Private-Group-ID of a CoA
	}{
		{name: "reload moves members to guest", code: radius.CodeCoARequest, vlan: "120", do: func(t *testing.T) {
			moved := strings.Replace(base, memberRule, strings.Replace(memberRule, "general", "guest", 1), 1)
			if err := os.WriteFile(cfgPath, []byte(moved), 0o600); err != nil {
				t.Fatal(err)
			}
			resp, err := http.Post("http://"+info.Metrics+"/-/reload", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("reload: %s", resp.Status)
			}
		}},
		{name: "nacd ca revoke through the running daemon disconnects", code: radius.CodeDisconnectRequest, do: func(t *testing.T) {
			// The CLI finds nacd listening at --server and revokes through
			// its admin API (the bbolt store is locked by serve anyway).
			code, out, errOut := runCACmd(t, "revoke", "--data-dir", dataDir, "--server", pkiURL, "--device", inv.DeviceUUID, "--reason", "keyCompromise")
			if code != exitOK || !strings.Contains(out, chain[0].SerialNumber.Text(16)) || !strings.Contains(out, "via "+pkiURL) {
				t.Fatalf("nacd ca revoke: %d %q %q", code, out, errOut)
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			p := nas.next(t)
			if p.Code != st.code || string(p.Get(44)) != "pki-0001" {
				t.Fatalf("NAS got %v for session %q, want %v for pki-0001", p.Code, p.Get(44), st.code)
			}
			if st.vlan != "" && !strings.HasSuffix(string(p.Get(81)), st.vlan) {
				t.Errorf("CoA Tunnel-Private-Group-ID %q, want %s", p.Get(81), st.vlan)
			}
		})
	}

	// the CRL at the URL the certificate names lists it
	resp, err := http.Get(crlURL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL at %s: %v", crlURL, err)
	}
	if !slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(chain[0].SerialNumber) == 0 }) {
		t.Errorf("revoked serial %x not in the CRL at %s", chain[0].SerialNumber, crlURL)
	}

	if res := eapol(); !res.Rejected() {
		t.Fatalf("revoked device not rejected: %s\n%s", res.Code, res.Raw)
	}
	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	var last map[string]any
	for _, l := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "access-reject" {
			last = m
		}
	}
	if last == nil || last["event.reason"] != "revoked" || last["device.id"] != inv.DeviceUUID {
		t.Errorf("access log of the reject: %v", last)
	}
}
