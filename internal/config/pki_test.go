package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPKIConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pw, []byte("hunter2-smtp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		yaml     string
		listen   string
		admins   []string
		starttls string // "" no mailer
		password string
		crl      string
	}{
		{name: "default", yaml: minimal, listen: DefaultPKI, crl: "http://127.0.0.1:9443/crl"},
		{name: "disabled", yaml: minimal + "listen:\n  pki: \"\"\n", listen: "", crl: ""},
		{name: "any address", yaml: minimal + "listen:\n  pki: \":8443\"\n", listen: ":8443", crl: "http://127.0.0.1:8443/crl"},
		{name: "ipv6", yaml: minimal + "listen:\n  pki: \"[::1]:9443\"\n", listen: "[::1]:9443", crl: "http://[::1]:9443/crl"},
		{name: "admins and smtp", yaml: minimal + fmt.Sprintf("pki:\n  admin_subjects: [helpdesk, \"urn:uuid:0a1b\"]\n  smtp:\n    addr: 127.0.0.1:2525\n    from: nac@herts.example\n    username: nac\n    password_file: %s\n    require_starttls: true\n", pw),
			listen: DefaultPKI, admins: []string{"helpdesk", "urn:uuid:0a1b"}, starttls: "required", password: "hunter2-smtp", crl: "http://127.0.0.1:9443/crl"},
		{name: "smtp opportunistic", yaml: minimal + "pki:\n  smtp:\n    addr: 127.0.0.1:2525\n    from: nac@herts.example\n",
			listen: DefaultPKI, starttls: "opportunistic", crl: "http://127.0.0.1:9443/crl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "test.yaml", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen.PKI != tc.listen {
				t.Errorf("Listen.PKI = %q, want %q", cfg.Listen.PKI, tc.listen)
			}
			if !reflect.DeepEqual(cfg.PKI.AdminSubjects, tc.admins) {
				t.Errorf("AdminSubjects = %q, want %q", cfg.PKI.AdminSubjects, tc.admins)
			}
			switch {
			case tc.starttls == "" && cfg.PKI.Mail != nil:
				t.Errorf("Mail = %+v, want none", cfg.PKI.Mail)
			case tc.starttls != "" && (cfg.PKI.Mail == nil || cfg.PKI.Mail.StartTLS != tc.starttls || cfg.PKI.Mail.Password != tc.password):
				t.Errorf("Mail = %+v, want starttls %s", cfg.PKI.Mail, tc.starttls)
			}
			if crl, ocsp := PKIURLs(cfg.Listen.PKI); crl != tc.crl || (crl != "" && ocsp != strings.TrimSuffix(crl, "/crl")+"/ocsp") {
				t.Errorf("PKIURLs = %q %q, want %q", crl, ocsp, tc.crl)
			}
		})
	}
}

func TestPKIAndCurveProblems(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"listen.pki not host:port", minimal + "listen:\n  pki: 9443\n", []string{`listen.pki: "9443" is not host:port`}},
		{"listen.pki bad host", minimal + "listen:\n  pki: pki.example:9443\n", []string{`listen.pki: "pki.example:9443": host "pki.example" is not an IP address`}},
		{"listen.pki bad port", minimal + "listen:\n  pki: 127.0.0.1:99999\n", []string{`listen.pki: "127.0.0.1:99999": port "99999" is not a number`}},
		{"smtp incomplete", minimal + "pki:\n  smtp:\n    addr: smtp\n    from: \"NAC <nac@herts.example>\"\n    username: nac\n",
			[]string{`pki.smtp.addr: "smtp" is not host:port`, `pki.smtp.from: "NAC <nac@herts.example>" is not a plain e-mail address`, `pki.smtp.username: is set but password_file is not`}},
		{"smtp password unreadable", minimal + "pki:\n  smtp:\n    addr: smtp:587\n    from: nac@herts.example\n    username: nac\n    password_file: /nonexistent/pw\n",
			[]string{`pki.smtp.password_file: cannot read`}},
		{"empty admin subject", minimal + "pki:\n  admin_subjects: [\"\"]\n", []string{`pki.admin_subjects: entry 0 is empty`}},
		{"unknown pki field", minimal + "pki:\n  admins: [x]\n", []string{`pki.admins`}},
		{"unknown curve", minimal + "tls:\n  curve_preferences: [x25519, kyber512]\n", []string{`tls.curve_preferences: unknown key exchange "kyber512"`}},
		{"repeated curve", minimal + "tls:\n  curve_preferences: [p256, P256]\n", []string{`tls.curve_preferences: `}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "test.yaml", t.TempDir())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems do not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCurvePreferences(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"default", minimal, nil},
		{"listed", minimal + "tls:\n  curve_preferences: [x25519mlkem768, X25519, p256]\n", []string{"x25519mlkem768", "X25519", "p256"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "test.yaml", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.TLS.CurvePreferences, tc.want) {
				t.Errorf("CurvePreferences = %q, want %q", cfg.TLS.CurvePreferences, tc.want)
			}
			if cfg.TLS.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x", cfg.TLS.MinVersion)
			}
		})
	}
}
