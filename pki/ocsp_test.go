package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ocsp"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/internal/testtool"
)

func TestOCSPOpenSSL(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testOCSPOpenSSL(t, b) })
}

func testOCSPOpenSSL(t *testing.T, b backend) {
	openssl := testtool.Require(t, "openssl")
	e := newAPIEnv(t, b)
	goodChain, _, _ := e.enrolDevice(t)
	revChain, _, _ := e.enrolDevice(t, func(i *Invite) { i.Email = "gone@herts.example" })
	if _, err := b.auth.RevokeHolder(context.Background(), "gone@herts.example", ReasonKeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	// A certificate this CA's intermediate never issued (same issuer key
	// and name, so the CertID matches, but no inventory record).
	stranger := e.strangerLeaf(t)

	cases := []struct {
		name string
		cert *x509.Certificate
		want string // openssl's status word
	}{
		{name: "enrolled device", cert: goodChain[0], want: "good"},
		{name: "revoked device (key compromise)", cert: revChain[0], want: "revoked"},
		{name: "never issued here", cert: stranger, want: "unknown"},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			certFile := filepath.Join(dir, "leaf.pem")
			if err := os.WriteFile(certFile, pemCerts(tc.cert), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(openssl, "ocsp", "-issuer", e.interFile, "-cert", certFile,
				"-url", e.pubURL+"/ocsp", "-CAfile", e.rootFile, "-timeout", "20").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl ocsp: %v\n%s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "Response verify OK") {
				t.Fatalf("openssl did not verify the response:\n%s", s)
			}
			if !strings.Contains(s, ": "+tc.want+"\n") {
				t.Fatalf("openssl status not %q:\n%s", tc.want, s)
			}
			if strings.Contains(s, "nonce") || strings.Contains(s, "WARNING") {
				t.Fatalf("nonce not echoed:\n%s", s)
			}
			if !strings.Contains(s, "This Update:") || !strings.Contains(s, "Next Update:") {
				t.Fatalf("no thisUpdate/nextUpdate:\n%s", s)
			}
			if tc.want == "revoked" && !strings.Contains(s, "Reason: keyCompromise") {
				t.Fatalf("revocation reason missing:\n%s", s)
			}
		})
	}
}

// strangerLeaf is a certificate signed by the env's intermediate that the
// CA has no record of.
func (e *apiEnv) strangerLeaf(t *testing.T) *x509.Certificate {
	t.Helper()
	type keyed interface{ Signer() crypto.Signer }
	inter := &testpki.CA{Cert: e.b.auth.Intermediate(), Key: e.b.auth.(keyed).Signer()}
	return inter.IssueDevice(t, testpki.Device{CommonName: "stranger"}).Cert
}

func TestOCSPGoClient(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	chain, _, _ := e.enrolDevice(t)
	issuer := b.auth.Intermediate()
	req, err := ocsp.CreateRequest(chain[0], issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte{0x04, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	withNonce := addNonce(t, req, nonce)
	otherCA := testpki.NewRoot(t, "other").NewIntermediate(t, "other inter")
	foreignReq, _ := ocsp.CreateRequest(otherCA.IssueDevice(t, testpki.Device{}).Cert, otherCA.Cert, nil)

	var lastCache string
	post := func(body []byte) []byte {
		resp, err := http.Post(e.pubURL+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
		}
		out, _ := io.ReadAll(resp.Body)
		return out
	}
	get := func(body []byte) []byte {
		resp, err := http.Get(e.pubURL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lastCache = resp.Header.Get("Cache-Control")
		out, _ := io.ReadAll(resp.Body)
		return out
	}

	cases := []struct {
		name      string
		send      func([]byte) []byte
		req       []byte
		status    int
		respErr   error
		wantNonce bool
		cacheable bool
	}{
		{name: "POST SHA-256 CertID with nonce", send: post, req: withNonce, status: ocsp.Good, wantNonce: true},
		{name: "GET without nonce", send: get, req: req, status: ocsp.Good, cacheable: true},
		{name: "another CA's certificate", send: post, req: foreignReq, respErr: ocsp.ResponseError{Status: ocsp.Unauthorized}},
		{name: "garbage", send: post, req: []byte("junk"), respErr: ocsp.ResponseError{Status: ocsp.Malformed}},
		{name: "garbage GET", send: get, req: []byte("junk"), respErr: ocsp.ResponseError{Status: ocsp.Malformed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lastCache = ""
			raw := tc.send(tc.req)
			if tc.cacheable != strings.Contains(lastCache, "max-age") {
				t.Fatalf("Cache-Control %q, want cacheable=%v", lastCache, tc.cacheable)
			}
			resp, err := ocsp.ParseResponseForCert(raw, chain[0], issuer)
			if tc.respErr != nil {
				if err != tc.respErr {
					t.Fatalf("err %v, want %v", err, tc.respErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse/verify: %v", err)
			}
			if resp.Status != tc.status || resp.SerialNumber.Cmp(chain[0].SerialNumber) != 0 {
				t.Fatalf("status %d serial %v", resp.Status, resp.SerialNumber)
			}
			if !resp.NextUpdate.After(resp.ThisUpdate) || resp.ThisUpdate.After(time.Now().Add(time.Second)) {
				t.Fatalf("thisUpdate %v nextUpdate %v", resp.ThisUpdate, resp.NextUpdate)
			}
			got := responseNonce(t, raw)
			if tc.wantNonce != (got != nil) || (got != nil && !bytes.Equal(got, nonce)) {
				t.Fatalf("nonce %x, want %v", got, tc.wantNonce)
			}
		})
	}
	for res, want := range map[OCSPResult]float64{OCSPGood: 2, OCSPUnauthorized: 1, OCSPMalformed: 2} {
		if got := testutil.ToFloat64(e.api.ocspRes.WithLabelValues(string(res))); got != want {
			t.Errorf("nacd_pki_ocsp_responses_total{result=%q} = %v, want %v", res, got, want)
		}
	}
	if got := testutil.ToFloat64(e.api.requests.WithLabelValues("enroll", "201")); got != 1 {
		t.Errorf("nacd_pki_http_requests_total{route=enroll,code=201} = %v, want 1", got)
	}
}

// addNonce inserts a nonce extension into an x/crypto OCSP request.
func addNonce(t testing.TB, der, nonce []byte) []byte {
	t.Helper()
	var req struct {
		TBS struct {
			RequestList asn1.RawValue
		}
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		t.Fatal(err)
	}
	ext, err := asn1.Marshal([]struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}{{oidOCSPNonce, nonce}})
	if err != nil {
		t.Fatal(err)
	}
	extTagged, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: ext})
	tbs, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: append(append([]byte{}, req.TBS.RequestList.FullBytes...), extTagged...)})
	out, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	return out
}

// responseNonce digs the nonce out of responseExtensions.
func responseNonce(t *testing.T, raw []byte) []byte {
	t.Helper()
	var r responseASN1
	if _, err := asn1.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(r.Response.Response, &basic); err != nil {
		t.Fatal(err)
	}
	var data responseData
	if _, err := asn1.Unmarshal(basic.TBSResponseData.FullBytes, &data); err != nil {
		t.Fatal(err)
	}
	for _, e := range data.ResponseExtensions {
		if e.Id.Equal(oidOCSPNonce) {
			return e.Value
		}
	}
	return nil
}

func TestCRLOverHTTPOpenSSL(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testCRLOverHTTPOpenSSL(t, b) })
}

func testCRLOverHTTPOpenSSL(t *testing.T, b backend) {
	openssl := testtool.Require(t, "openssl")
	e := newAPIEnv(t, b)
	chain, _, _ := e.enrolDevice(t)
	if err := b.auth.Revoke(context.Background(), hexSerial(chain[0]), ReasonSuperseded, "test"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		base   string
		accept string
		query  string
		pem    bool
	}{
		{name: "plain HTTP, DER", base: e.pubURL},
		{name: "plain HTTP, PEM by Accept", base: e.pubURL, accept: "application/x-pem-file", pem: true},
		{name: "plain HTTP, PEM by query", base: e.pubURL, query: "?format=pem", pem: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tc.base+"/crl"+tc.query, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET /crl: %d", resp.StatusCode)
			}
			der := body
			form := "DER"
			if tc.pem {
				blk, _ := pem.Decode(body)
				if blk == nil || blk.Type != "X509 CRL" {
					t.Fatalf("not a PEM CRL: %q", body)
				}
				der, form = blk.Bytes, "PEM"
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(b.auth.Intermediate()); err != nil {
				t.Fatalf("CRL signature: %v", err)
			}
			if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(chain[0].SerialNumber) != 0 {
				t.Fatalf("CRL entries %v", crl.RevokedCertificateEntries)
			}
			f := filepath.Join(t.TempDir(), "crl")
			if err := os.WriteFile(f, body, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(openssl, "crl", "-inform", form, "-in", f, "-CAfile", e.caFile, "-noout").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "verify OK") {
				t.Fatalf("openssl crl: %v\n%s", err, out)
			}
		})
	}
	// The TLS listener serves it too; the public listener serves nothing else.
	if r := e.do(nil, "GET", "/crl", "", "", nil); r.code != 200 {
		t.Fatalf("GET /crl over TLS: %d", r.code)
	}
	resp, err := http.Post(e.pubURL+"/v1/enroll", "application/pkcs10", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("enrolment on the plain-HTTP listener: %d, want 404", resp.StatusCode)
	}
}

func TestOCSPResponderRefusesOtherIssuersAndGarbage(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	o := &OCSPResponder{Issuer: b.auth.Intermediate(), Signer: b.auth.Signer(), Source: b.auth}
	req, _ := ocsp.CreateRequest(b.auth.Intermediate(), b.auth.Root(), nil) // issuer = root: not ours
	if _, res := o.Respond(context.Background(), req); res != OCSPUnauthorized {
		t.Fatalf("request for the root's children: %s, want unauthorized", res)
	}
	if _, res := o.Respond(context.Background(), nil); res != OCSPMalformed {
		t.Fatalf("empty request: %s", res)
	}
}

func FuzzOCSPRespond(f *testing.F) {
	b, _ := memBackend(f)
	o := &OCSPResponder{Issuer: b.auth.Intermediate(), Signer: b.auth.Signer(), Source: b.auth}
	leaf := (&testpki.CA{Cert: b.auth.Intermediate(), Key: b.auth.Signer()}).IssueDevice(f, testpki.Device{}).Cert
	req, _ := ocsp.CreateRequest(leaf, b.auth.Intermediate(), nil)
	f.Add(req)
	f.Add(addNonce(f, req, []byte{0x04, 0x02, 1, 2}))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, res := o.Respond(context.Background(), data)
		if len(resp) == 0 || res == "" {
			t.Fatalf("empty answer (%s)", res)
		}
	})
}

func BenchmarkOCSPRespond(b *testing.B) {
	be, _ := caBackend(b, "bbolt")
	o := &OCSPResponder{Issuer: be.auth.Intermediate(), Signer: be.auth.Signer(), Source: be.auth}
	csr, _ := newCSR(b, nil, nil)
	c, _ := ParseCSR(csr)
	chain, err := be.auth.Issue(context.Background(), c, Facts{Email: "a@herts.example", Role: "staff", Ownership: "personal"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	req, _ := ocsp.CreateRequest(chain[0], chain[1], nil)
	req = addNonce(b, req, []byte{0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8})
	ctx := context.Background()
	for b.Loop() {
		if _, res := o.Respond(ctx, req); res != OCSPGood {
			b.Fatal(res)
		}
	}
}
