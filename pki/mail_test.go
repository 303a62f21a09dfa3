package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/smtptest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

func TestInvitationMailedThroughRealSMTP(t *testing.T) {
	ca := testpki.NewRoot(t, "smtp test root")
	srv := ca.IssueServer(t, "localhost", testpki.ECDSAP256)
	files := srv.WriteFiles(t, t.TempDir(), "smtp")
	good := x509.NewCertPool()
	good.AddCert(ca.Cert)
	wrong := x509.NewCertPool()
	wrong.AddCert(testpki.NewRoot(t, "not the smtp root").Cert)

	plain := smtptest.Start(t)
	withTLS := smtptest.Start(t, files.Cert, files.Key)

	cases := []struct {
		name      string
		server    *smtptest.Server
		starttls  string
		roots     *x509.CertPool
		wantErr   error // errors.Is; nil = delivered
		anyErr    bool
		delivered bool
	}{
		{name: "no STARTTLS offered, opportunistic", server: plain, delivered: true},
		{name: "no STARTTLS offered, required", server: plain, starttls: "required", wantErr: ErrNoStartTLS},
		{name: "STARTTLS required and offered (server refuses MAIL before it)", server: withTLS, starttls: "required", roots: good, delivered: true},
		{name: "STARTTLS off: the TLS server refuses clear-text MAIL", server: withTLS, starttls: "off", anyErr: true},
		{name: "STARTTLS with an untrusted server certificate", server: withTLS, roots: wrong, anyErr: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMailer(MailConfig{Addr: tc.server.Addr, From: "ict-servicedesk@herts.example", StartTLS: tc.starttls,
				TLS: &tls.Config{RootCAs: tc.roots, ServerName: "localhost"}, Timeout: 20 * time.Second, CAFile: "council-root.crt"})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := memBackend(t)
			enr, err := NewEnroller(EnrollConfig{Issuer: b.auth, Tokens: b.tokens, BaseURL: "https://127.0.0.1:9443", Mailer: m})
			if err != nil {
				t.Fatal(err)
			}
			holder := fmt.Sprintf("holder%d@herts.example", i)
			inv, err := enr.Invite(context.Background(), Invite{Email: holder, Role: policy.RoleMember,
				Ownership: policy.OwnershipPersonal, DeviceName: "tablet", Mail: true, By: "test"})
			if inv.Token == "" {
				t.Fatalf("no token created: %v", err)
			}
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || inv.Mailed {
					t.Fatalf("err %v mailed %v, want %v", err, inv.Mailed, tc.wantErr)
				}
			case tc.anyErr:
				if err == nil || inv.Mailed {
					t.Fatalf("mailed through an untrusted TLS server")
				}
			default:
				if err != nil || !inv.Mailed {
					t.Fatalf("not mailed: %v", err)
				}
			}
			if !tc.delivered {
				time.Sleep(200 * time.Millisecond)
				if strings.Contains(tc.server.Output(), inv.Token) {
					t.Fatal("the message was delivered anyway")
				}
				return
			}
			if !tc.server.WaitFor(inv.URL) {
				t.Fatalf("the SMTP server never printed the enrolment link %s:\n%s", inv.URL, tc.server.Output())
			}
			out := tc.server.Output()
			for _, want := range []string{"To: " + holder, "From: ict-servicedesk@herts.example", "Subject: Your network enrolment link",
				"/v1/enroll", "--cacert council-root.crt", inv.Facts.DeviceUUID} {
				if !strings.Contains(out, want) {
					t.Fatalf("message lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestMailerConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  MailConfig
		ok   bool
	}{
		{name: "ok", cfg: MailConfig{Addr: "127.0.0.1:25", From: "a@b.example"}, ok: true},
		{name: "no port", cfg: MailConfig{Addr: "127.0.0.1", From: "a@b.example"}},
		{name: "display name sender", cfg: MailConfig{Addr: "127.0.0.1:25", From: "A <a@b.example>"}},
		{name: "header injection in sender", cfg: MailConfig{Addr: "127.0.0.1:25", From: "a@b.example\r\nBcc: x@y"}},
		{name: "bad starttls mode", cfg: MailConfig{Addr: "127.0.0.1:25", From: "a@b.example", StartTLS: "maybe"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMailer(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestInvitationCommandsRun runs the commands of the invitation text, as
// a holder would paste them into a shell (openssl and curl), against the
// HTTPS API: both the CSR path and the PKCS#12 path must work as written.
func TestInvitationCommandsRun(t *testing.T) {
	testtool.Require(t, "openssl")
	testtool.Require(t, "curl")
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	// The server certificate names localhost (not 127.0.0.1): the link
	// uses it, as a deployment uses the PKI listener's DNS name.
	base := strings.Replace(e.url, "127.0.0.1", "localhost", 1)
	inv := e.invite(func(i *Invite) { i.DeviceName = "o'brien laptop" })
	text := InvitationText(inv, base, "")

	csrCmd := commandBlock(t, text, "On a device that can make its own key")
	p12Cmd := commandBlock(t, text, "For a device that cannot make a request")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nacd-root.crt"), pemCerts(b.auth.Root()), 0o644); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("sh", "-e", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v running:\n%s\n%s", err, script, out)
		}
		return string(out)
	}
	sh(csrCmd)
	data, err := os.ReadFile(filepath.Join(dir, "device-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, data)
	if chain[0].Subject.CommonName != "o'brien laptop" {
		t.Fatalf("CN %q: the certificate carries the token's device name, not the CSR's", chain[0].Subject.CommonName)
	}
	// The same token again (the PKCS#12 command): refused, it was used.
	out, err := exec.Command("sh", "-c", "cd "+dir+" && "+strings.Replace(p12Cmd, "curl --fail", "curl -s", 1)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"token_used"`) {
		t.Fatalf("PKCS#12 command with a used token: %v %s", err, out)
	}
	inv2 := e.invite()
	out2 := sh(commandBlock(t, InvitationText(inv2, base, ""), "For a device that cannot make a request"))
	if !strings.Contains(out2, `"pkcs12"`) || !strings.Contains(out2, `"password"`) {
		t.Fatalf("PKCS#12 command output: %s", out2)
	}
}

// commandBlock returns the indented shell lines after the paragraph that
// starts with head, joined (backslash continuations kept).
func commandBlock(t *testing.T, text, head string) string {
	t.Helper()
	i := strings.Index(text, head)
	if i < 0 {
		t.Fatalf("no %q paragraph in:\n%s", head, text)
	}
	var lines []string
	for _, l := range strings.Split(text[i:], "\n")[1:] {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, "\n")
}
