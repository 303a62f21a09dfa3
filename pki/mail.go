package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// MailConfig configures the SMTP server invitations go through.
type MailConfig struct {
	Addr string // host:port of the submission server (e.g. "smtp.herts.example:587")
	From string // envelope and header sender, a plain address
	// HelloName is sent in EHLO (default "localhost").
	HelloName string
	// StartTLS: "opportunistic" (default: upgrade when the server offers
	// STARTTLS), "required" (refuse to send in clear), or "off".
	StartTLS string
	// TLS verifies the server's certificate on STARTTLS (RootCAs,
	// ServerName; default: system roots, the host of Addr).
	TLS *tls.Config
	// Username/Password: AUTH PLAIN, only ever sent over TLS (or to
	// loopback, as net/smtp allows). Empty: no AUTH.
	Username, Password string
	// Timeout bounds the whole conversation (default 30s).
	Timeout time.Duration
	// CAFile, when set, is named in the instructions as the file to pass to
	// curl --cacert (the CA root a holder downloads).
	CAFile string
}

// Mailer sends enrolment invitations by SMTP (net/smtp).
type Mailer struct {
	cfg MailConfig
}

// NewMailer checks cfg.
func NewMailer(cfg MailConfig) (*Mailer, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("pki: SMTP address %q: want host:port", cfg.Addr)
	}
	if err := plainAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("pki: SMTP sender: %w", err)
	}
	switch cfg.StartTLS {
	case "":
		cfg.StartTLS = "opportunistic"
	case "opportunistic", "required", "off":
	default:
		return nil, fmt.Errorf("pki: SMTP starttls %q: want opportunistic, required or off", cfg.StartTLS)
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{}
	}
	cfg.TLS = cfg.TLS.Clone()
	if cfg.TLS.ServerName == "" {
		cfg.TLS.ServerName = host
	}
	if cfg.TLS.MinVersion == 0 {
		cfg.TLS.MinVersion = tls.VersionTLS12
	}
	return &Mailer{cfg: cfg}, nil
}

func plainAddress(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || strings.ContainsAny(s, "\r\n") {
		return fmt.Errorf("%q is not a plain e-mail address", s)
	}
	return nil
}

// SendInvitation e-mails the enrolment link and instructions of inv to its
// holder. The token is in the body only (never in a header or a log).
func (m *Mailer) SendInvitation(ctx context.Context, inv Invitation, baseURL string) error {
	to := inv.Facts.Email
	if err := plainAddress(to); err != nil {
		return fmt.Errorf("pki: recipient: %w", err)
	}
	msg, err := m.compose(inv, baseURL)
	if err != nil {
		return err
	}
	return m.send(ctx, to, msg)
}

// InvitationText is the body of an invitation e-mail (also what `nacd
// enroll invite` prints): the link, the expiry, and the commands a device
// or helper script runs.
func InvitationText(inv Invitation, baseURL, caFile string) string {
	var b strings.Builder
	name := inv.Facts.DeviceName
	if name == "" {
		name = inv.Facts.Email
	}
	if caFile == "" {
		caFile = "nacd-root.crt"
	}
	fmt.Fprintf(&b, "A network certificate has been approved for a device of %s.\n\n", inv.Facts.Email)
	fmt.Fprintf(&b, "Device:     %s (%s)\n", name, inv.Facts.DeviceUUID)
	fmt.Fprintf(&b, "Ownership:  %s, role %s\n", inv.Facts.Ownership, inv.Facts.Role)
	fmt.Fprintf(&b, "Expires:    %s (the link works once)\n\n", inv.ExpiresAt.UTC().Format(time.RFC1123))
	if inv.URL != "" {
		fmt.Fprintf(&b, "Enrolment link:\n  %s\n\n", inv.URL)
	}
	fmt.Fprintf(&b, "Enrolment token (keep it secret, it works once):\n  %s\n\n", inv.Token)
	if baseURL != "" {
		fmt.Fprintf(&b, "On a device that can make its own key (the key never leaves it):\n")
		fmt.Fprintf(&b, "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n")
		fmt.Fprintf(&b, "    -keyout device.key -out device.csr -subj '/CN=%s'\n", shellSafe(name))
		fmt.Fprintf(&b, "  curl --fail --cacert %s -H 'Authorization: Bearer %s' \\\n", caFile, inv.Token)
		fmt.Fprintf(&b, "    -H 'Content-Type: application/pkcs10' --data-binary @device.csr \\\n")
		fmt.Fprintf(&b, "    -o device-chain.pem %s/v1/enroll\n\n", baseURL)
		fmt.Fprintf(&b, "For a device that cannot make a request (a PKCS#12 bundle with a password):\n")
		fmt.Fprintf(&b, "  curl --fail --cacert %s -H 'Authorization: Bearer %s' \\\n", caFile, inv.Token)
		fmt.Fprintf(&b, "    -H 'Content-Type: application/json' -d '{\"key_type\":\"ecdsa-p256\"}' \\\n")
		fmt.Fprintf(&b, "    %s/v1/enroll/pkcs12\n", baseURL)
	}
	return b.String()
}

// shellSafe drops characters that would break the single-quoted command.
func shellSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\'' || r == '\\' || r < 0x20 {
			return -1
		}
		return r
	}, s)
}

func (m *Mailer) compose(inv Invitation, baseURL string) ([]byte, error) {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	host := m.cfg.HelloName
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", m.cfg.From)
	hdr("To", inv.Facts.Email)
	hdr("Subject", "Your network enrolment link (nacd)")
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+host+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	body := InvitationText(inv, baseURL, m.cfg.CAFile)
	for _, line := range strings.Split(body, "\n") {
		b.WriteString(strings.TrimRight(line, "\r") + "\r\n")
	}
	return b.Bytes(), nil
}

// ErrNoStartTLS is returned when StartTLS is "required" and the server does
// not offer it.
var ErrNoStartTLS = errors.New("pki: SMTP server does not offer STARTTLS")

func (m *Mailer) send(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Addr)
	if err != nil {
		return fmt.Errorf("pki: SMTP dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	host, _, _ := net.SplitHostPort(m.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("pki: SMTP greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(m.cfg.HelloName); err != nil {
		return fmt.Errorf("pki: SMTP EHLO: %w", err)
	}
	if m.cfg.StartTLS != "off" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(m.cfg.TLS); err != nil {
				return fmt.Errorf("pki: SMTP STARTTLS: %w", err)
			}
		} else if m.cfg.StartTLS == "required" {
			return ErrNoStartTLS
		}
	}
	if m.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, host)); err != nil {
			return fmt.Errorf("pki: SMTP AUTH: %w", err)
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("pki: SMTP MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("pki: SMTP RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("pki: SMTP DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("pki: SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("pki: SMTP DATA: %w", err)
	}
	return c.Quit()
}
