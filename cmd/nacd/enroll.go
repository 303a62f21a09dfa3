package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// DefaultPKIURL is where `nacd enroll` finds the PKI HTTP API (design
// section 6: PKI/enrolment HTTP on 127.0.0.1:9443).
const DefaultPKIURL = "https://127.0.0.1:9443"

const enrollUsage = `usage:
  nacd enroll invite --email E --role R --ownership O [--il3] [--device-name N] [--valid 72h]
                     [--data-dir DIR] [--server URL] [--ca-file FILE] [--json]
                     [--smtp HOST:PORT --smtp-from ADDR [--smtp-starttls opportunistic|required|off]
                      [--smtp-user U --smtp-password-file F] [--smtp-ca FILE]]

Creates a single-use enrolment token bound to the holder's facts and prints
the enrolment link, the token and the commands the device runs. The token is
shown once (only its hash is stored). With --smtp the invitation is also
e-mailed to the holder.

It asks the running nacd (--server, default ` + DefaultPKIURL + `) with the
admin token in DATA_DIR/` + pki.AdminTokenFileName + `; when no nacd is listening
there, it opens the CA in the data dir itself.

  --role       staff | member | contractor | visitor
  --ownership  council-managed | personal
  --il3        the holder is cleared for IL3 (council-managed devices only)
`

// runEnroll runs `nacd enroll ...` (args without "enroll").
func runEnroll(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "invite" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, enrollUsage)
			return exitOK
		}
		fmt.Fprint(stderr, "nacd enroll: ", enrollUsage)
		return exitUsage
	}
	return cmdEnrollInvite(context.Background(), args[1:], stdout, stderr)
}

type inviteFlags struct {
	email, role, ownership, deviceName string
	il3                                bool
	valid                              time.Duration
	dataDir, server, caFile            string
	asJSON                             bool
	smtp, smtpFrom, smtpStartTLS       string
	smtpUser, smtpPasswordFile, smtpCA string
}

func cmdEnrollInvite(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("enroll invite", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, enrollUsage) }
	var f inviteFlags
	fs.StringVar(&f.email, "email", "", "holder's e-mail address (SAN rfc822Name)")
	fs.StringVar(&f.role, "role", "", "staff | member | contractor | visitor")
	fs.StringVar(&f.ownership, "ownership", "", "council-managed | personal")
	fs.BoolVar(&f.il3, "il3", false, "holder cleared for IL3")
	fs.StringVar(&f.deviceName, "device-name", "", "device name (certificate CN; default the e-mail)")
	fs.DurationVar(&f.valid, "valid", pki.DefaultTokenValidity, "token lifetime (at most 720h)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (default "+config.DefaultDataDir+")")
	fs.StringVar(&f.server, "server", DefaultPKIURL, "PKI HTTP API of the running nacd")
	fs.StringVar(&f.caFile, "ca-file", "", "CA root to verify --server with (default DATA_DIR/ca/root.crt)")
	fs.BoolVar(&f.asJSON, "json", false, "print the invitation as JSON")
	fs.StringVar(&f.smtp, "smtp", "", "SMTP server host:port; e-mail the invitation")
	fs.StringVar(&f.smtpFrom, "smtp-from", "", "sender address of the invitation e-mail")
	fs.StringVar(&f.smtpStartTLS, "smtp-starttls", "opportunistic", "opportunistic | required | off")
	fs.StringVar(&f.smtpUser, "smtp-user", "", "SMTP AUTH user (password from --smtp-password-file or NACD_SMTP_PASSWORD)")
	fs.StringVar(&f.smtpPasswordFile, "smtp-password-file", "", "file holding the SMTP AUTH password")
	fs.StringVar(&f.smtpCA, "smtp-ca", "", "PEM roots to verify the SMTP server's STARTTLS certificate (default: system roots)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	var missing []string
	for _, m := range []struct{ name, v string }{{"--email", f.email}, {"--role", f.role}, {"--ownership", f.ownership}} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "nacd enroll invite: missing %s\n", strings.Join(missing, ", "))
		return exitUsage
	}
	if f.smtp != "" && f.smtpFrom == "" {
		fmt.Fprintln(stderr, "nacd enroll invite: --smtp needs --smtp-from")
		return exitUsage
	}
	inv := pki.Invite{Email: f.email, Role: policy.Role(f.role), Ownership: policy.Ownership(f.ownership),
		ClearanceIL3: f.il3, DeviceName: f.deviceName, Valid: f.valid}
	if err := pki.ValidateInvite(inv); err != nil {
		fmt.Fprintf(stderr, "nacd enroll invite: %v\n", err)
		return exitUsage
	}
	if f.dataDir == "" {
		f.dataDir = config.DefaultDataDir
	}
	api, err := newAdminAPI(f.server, f.dataDir, f.caFile)
	if err != nil {
		fmt.Fprintf(stderr, "nacd enroll invite: %v\n", err)
		return exitUsage
	}
	f.server = api.server
	var mailer *pki.Mailer
	if f.smtp != "" {
		mailer, err = newCLIMailer(f)
		if err != nil {
			printErr(stderr, "enroll invite", err)
			return exitFailure
		}
	}

	var (
		out pki.InviteResponse
		via string
	)
	if api.listening() {
		out, via, err = inviteViaAPI(ctx, api, inv)
	} else {
		out, via, err = inviteLocal(ctx, f, inv)
	}
	if err != nil {
		printErr(stderr, "enroll invite", err)
		return exitFailure
	}
	caHint := "nacd-root.crt"
	if mailer != nil {
		if err := mailer.SendInvitation(ctx, out.Invitation, f.server); err != nil {
			printErr(stderr, "enroll invite", fmt.Errorf("token %s created but not e-mailed: %w", out.ID, err))
			printInvitation(stdout, out, f, caHint, via)
			return exitFailure
		}
		out.Mailed = true
	}
	printInvitation(stdout, out, f, caHint, via)
	return exitOK
}

func printInvitation(w io.Writer, out pki.InviteResponse, f inviteFlags, caHint, via string) {
	if f.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return
	}
	fmt.Fprintf(w, "enrolment token %s created (%s) for %s, device %s, expires %s",
		out.ID, via, out.Facts.Email, out.DeviceUUID, out.ExpiresAt.UTC().Format(time.RFC3339))
	if out.Mailed {
		fmt.Fprintf(w, "; e-mailed to %s", out.Facts.Email)
	}
	fmt.Fprint(w, "\n\n", pki.InvitationText(out.Invitation, f.server, caHint))
}

// inviteViaAPI asks the running nacd's admin API.
func inviteViaAPI(ctx context.Context, api *adminAPI, inv pki.Invite) (pki.InviteResponse, string, error) {
	var out pki.InviteResponse
	err := api.call(ctx, http.MethodPost, "/v1/admin/tokens", pki.InviteRequest{Email: inv.Email, Role: string(inv.Role), Ownership: string(inv.Ownership),
		ClearanceIL3: inv.ClearanceIL3, DeviceName: inv.DeviceName, Valid: inv.Valid.String()}, &out, http.StatusCreated)
	if err != nil {
		return pki.InviteResponse{}, "", err
	}
	out.Facts = out.FactsOf()
	return out, "via " + api.server, nil
}

// serverTLS verifies the PKI listener against the CA root only. When the
// server is addressed by IP (the default https://127.0.0.1:9443) and its
// certificate names only DNS names (the CA issues nacd's server
// certificate for DNS names), the name check is replaced by: the chain
// verifies to this root and the leaf is a serverAuth certificate. nacd's
// CA issues serverAuth only to nacd itself (devices get clientAuth only),
// so this still pins the peer to a nacd server of this CA.
func serverTLS(roots *x509.CertPool, server string) *tls.Config {
	host := server
	if u, err := url.Parse(server); err == nil {
		host = u.Hostname()
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if net.ParseIP(host) == nil {
		return tc
	}
	tc.InsecureSkipVerify = true // replaced by VerifyConnection below
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		leaf := cs.PeerCertificates[0]
		if leaf.VerifyHostname(host) == nil {
			opts.DNSName = host
		}
		_, err := leaf.Verify(opts)
		return err
	}
	return tc
}

// isNotListening reports whether err means nothing listens at the server
// address (so the CA can be opened directly).
func isNotListening(err error) bool {
	var op *net.OpError
	return err != nil && errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// inviteLocal opens the CA in the data dir (no nacd running) and creates
// the token in its store.
func inviteLocal(ctx context.Context, f inviteFlags, inv pki.Invite) (pki.InviteResponse, string, error) {
	ca, err := openCAWithin(ctx, pki.CAConfig{DataDir: f.dataDir}, openCATimeout)
	if err != nil {
		return pki.InviteResponse{}, "", fmt.Errorf("no nacd at %s, and the CA in %s: %w", f.server, f.dataDir, err)
	}
	defer ca.Close()
	enr, err := pki.NewEnroller(pki.EnrollConfig{Issuer: ca, Tokens: ca.Tokens(), BaseURL: f.server})
	if err != nil {
		return pki.InviteResponse{}, "", err
	}
	inv.By = "cli:" + currentUser()
	out, err := enr.Invite(ctx, inv)
	if err != nil {
		return pki.InviteResponse{}, "", err
	}
	return pki.NewInviteResponse(out), "in the store of " + f.dataDir, nil
}

// openCATimeout bounds the wait for the CA's store: the embedded (bbolt)
// store is locked while another process (nacd serve) has it open.
const openCATimeout = 15 * time.Second

// openCAWithin is pki.OpenCA that gives up after d (the open goes on in
// the background and is closed if it ever completes).
func openCAWithin(ctx context.Context, cfg pki.CAConfig, d time.Duration) (*pki.CA, error) {
	type result struct {
		ca  *pki.CA
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ca, err := pki.OpenCA(ctx, cfg)
		ch <- result{ca, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.ca, r.err
	case <-t.C:
		go func() {
			if r := <-ch; r.ca != nil {
				r.ca.Close()
			}
		}()
		return nil, fmt.Errorf("its store is still locked after %s: is nacd serve running with listen.pki disabled? (enable it, or use --server)", d)
	}
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid-%d", os.Getuid())
}

func newCLIMailer(f inviteFlags) (*pki.Mailer, error) {
	cfg := pki.MailConfig{Addr: f.smtp, From: f.smtpFrom, StartTLS: f.smtpStartTLS, Username: f.smtpUser, CAFile: "nacd-root.crt"}
	if f.smtpUser != "" {
		cfg.Password = os.Getenv("NACD_SMTP_PASSWORD")
		if f.smtpPasswordFile != "" {
			b, err := os.ReadFile(f.smtpPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("SMTP password: %w", err)
			}
			cfg.Password = strings.TrimSpace(string(b))
		}
		if cfg.Password == "" {
			return nil, errors.New("--smtp-user needs --smtp-password-file or NACD_SMTP_PASSWORD")
		}
	}
	if f.smtpCA != "" {
		b, err := os.ReadFile(f.smtpCA)
		if err != nil {
			return nil, fmt.Errorf("--smtp-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--smtp-ca %s: no PEM certificate", f.smtpCA)
		}
		cfg.TLS = &tls.Config{RootCAs: pool}
	}
	return pki.NewMailer(cfg)
}

// pkiListenerConfig configures the PKI HTTP listener of nacd serve.
type pkiListenerConfig struct {
	Addr string // listen address (design default 127.0.0.1:9443)
	// Certificate is the listener's TLS certificate; serve passes the
	// EAP-TLS server certificate (cfg.TLS.Certificate, issued by the CA) so
	// the CA keeps one server certificate. Nil: CA.ServerCertificate for
	// ServerNames (default [localhost]).
	Certificate   *tls.Certificate
	ServerNames   []string
	BaseURL       string   // as devices reach it, for enrolment links (default https://<Addr>)
	AdminSubjects []string // admin client certificates (CN or urn:uuid:)
	// Authority is what the API issues and revokes through (default the
	// CA itself); serve passes withSessionDisconnect(ca, ...) so that an
	// admin revocation also disconnects the device's live sessions.
	Authority  pki.Authority
	Mailer     *pki.Mailer
	Logger     *zap.Logger
	AccessLog  *zap.Logger // the access log: token and admin events go there
	Registerer prometheus.Registerer
}

// startPKIListener serves the PKI HTTP API for ca on c.Addr until ctx
// ends: enrolment, renewal and the admin API over TLS (the CA-issued
// server certificate), /crl, /ocsp and /ca.crt over plain HTTP too, on one
// port; the admin bearer token is DATA_DIR/admin.token (0600, created when
// missing); dead tokens are swept hourly (kept 7 days). It returns the
// bound address and a channel that yields the server's end.
//
// This is the one call nacd serve needs once it runs the CA.
func startPKIListener(ctx context.Context, ca *pki.CA, dataDir string, c pkiListenerConfig) (string, <-chan error, error) {
	var cert tls.Certificate
	if c.Certificate != nil {
		cert = *c.Certificate
	} else {
		if len(c.ServerNames) == 0 {
			c.ServerNames = []string{"localhost"}
		}
		certFile, keyFile, err := ca.ServerCertificate(ctx, c.ServerNames)
		if err != nil {
			return "", nil, fmt.Errorf("PKI listener certificate: %w", err)
		}
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return "", nil, fmt.Errorf("PKI listener certificate: %w", err)
		}
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("PKI listener: %w", err)
	}
	base := c.BaseURL
	if base == "" {
		base = "https://" + ln.Addr().String()
	}
	auth := c.Authority
	if auth == nil {
		auth = ca
	}
	enr, err := pki.NewEnroller(pki.EnrollConfig{Issuer: auth, Tokens: ca.Tokens(), BaseURL: base, Mailer: c.Mailer,
		Logger: c.Logger, AccessLog: c.AccessLog, Registerer: c.Registerer})
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	api, err := pki.NewAPI(pki.APIConfig{CA: auth, Enroller: enr, AdminTokenFile: filepath.Join(dataDir, pki.AdminTokenFileName),
		AdminSubjects: c.AdminSubjects, Logger: c.Logger, AccessLog: c.AccessLog, Registerer: c.Registerer})
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	done := make(chan error, 1)
	go enr.SweepEvery(ctx, time.Hour, 7*24*time.Hour)
	go func() { done <- api.ServeSplit(ctx, ln, cert) }()
	return ln.Addr().String(), done, nil
}
