package config

import (
	"net"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/herts-council/nacd/pki"
)

// DefaultPKI is the PKI HTTP listener's default address (design section 6).
const DefaultPKI = "127.0.0.1:9443"

// PKI configures the PKI listener of nacd's own CA.
type PKI struct {
	// AdminSubjects name the client certificates (CN or urn:uuid:) that
	// may use the admin API by mTLS, besides the admin bearer token.
	AdminSubjects []string
	// Mail, when not nil, is the SMTP server invitations are e-mailed
	// through (pki.NewMailer).
	Mail *pki.MailConfig
}

type rawPKI struct {
	AdminSubjects []string `yaml:"admin_subjects"`
	SMTP          *rawSMTP `yaml:"smtp"`
}

type rawSMTP struct {
	Addr            string `yaml:"addr"`
	From            string `yaml:"from"`
	Username        string `yaml:"username"`
	PasswordFile    string `yaml:"password_file"`
	RequireStartTLS bool   `yaml:"require_starttls"`
}

// PKIURLs are the CRL and OCSP URLs put in certificates nacd's CA issues,
// on the PKI listener at addr (host:port; an unspecified host gives
// 127.0.0.1). Empty when addr is, or names port 0 (a port chosen at
// start is not known to certificates).
func PKIURLs(addr string) (crl, ocsp string) {
	host, port, err := net.SplitHostPort(addr)
	if addr == "" || err != nil || port == "0" {
		return "", ""
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	return base + "/crl", base + "/ocsp"
}

func buildPKI(raw *rawConfig, cfg *Config, ps *problems) {
	switch p := raw.Listen.PKI; {
	case p == nil:
		cfg.Listen.PKI = DefaultPKI
	case strings.TrimSpace(*p) == "":
		cfg.Listen.PKI = ""
	default:
		cfg.Listen.PKI = listenAddr(ps, "listen.pki", *p, DefaultPKI)
	}
	rp := raw.PKI
	for i, s := range rp.AdminSubjects {
		if strings.TrimSpace(s) == "" {
			ps.add("pki.admin_subjects", "entry %d is empty", i)
		}
	}
	cfg.PKI.AdminSubjects = rp.AdminSubjects
	if rp.SMTP == nil {
		return
	}
	rs := rp.SMTP
	m := &pki.MailConfig{Addr: strings.TrimSpace(rs.Addr), From: strings.TrimSpace(rs.From), Username: rs.Username, StartTLS: "opportunistic", Timeout: 30 * time.Second}
	if rs.RequireStartTLS {
		m.StartTLS = "required"
	}
	if host, _, err := net.SplitHostPort(m.Addr); err != nil || host == "" {
		ps.add("pki.smtp.addr", "%q is not host:port (e.g. \"smtp.herts.example:587\")", rs.Addr)
	}
	if a, err := mail.ParseAddress(m.From); err != nil || a.Name != "" || a.Address != m.From {
		ps.add("pki.smtp.from", "%q is not a plain e-mail address", rs.From)
	}
	switch {
	case rs.PasswordFile != "" && rs.Username == "":
		ps.add("pki.smtp.password_file", "is set but username is not")
	case rs.Username != "" && rs.PasswordFile == "":
		ps.add("pki.smtp.username", "is set but password_file is not")
	case rs.PasswordFile != "":
		b, err := readFileTrim(rs.PasswordFile)
		if err != nil {
			ps.add("pki.smtp.password_file", "cannot read: %v", err)
		}
		m.Password = b
	}
	cfg.PKI.Mail = m
}
