package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

const caUsage = `usage:
  nacd ca init   [--force]                                   create the root + intermediate CA
  nacd ca issue  --csr FILE --email E --role R --ownership O [--il3]
                 [--device-uuid U] [--name N] [--valid 365d] --out FILE
  nacd ca renew  --cert FILE --csr FILE --out FILE
  nacd ca revoke (--serial S | --device UUID | --holder EMAIL) --reason R [--server URL] [--ca-file FILE]
  nacd ca list   [--expiring 30d] [--holder E] [--device U] [--status valid|revoked|expired] [--json]
  nacd ca crl    [--out FILE]                                current CRL (DER to FILE, else PEM on stdout)

Common flags: --data-dir DIR (default ./nacd-data), --store DSN (default: the
embedded bbolt DB in DIR/ca; postgres://... for a shared store),
--passphrase-file FILE (else NACD_CA_PASSPHRASE; keys are encrypted with it
when set at init), --crl-url URL and --ocsp-url URL (put in issued
certificates).

revoke asks the running nacd at --server (default ` + DefaultPKIURL + `, its
PKI listener) with the admin token in DATA_DIR, so that nacd also
disconnects the revoked devices' live sessions (RFC 5176) at once; only
when nothing listens there does it revoke in the store itself (and says
that live sessions are not disconnected).
The other commands open the CA and its store directly. With the embedded
store (bbolt), a running "nacd serve" holds the DB file lock: stop the daemon
first (the command fails after 5 s with "store in use" otherwise), or use the
running server's admin API (POST /v1/admin/issue). With a PostgreSQL store
they work while nacd nodes run; the nodes pick up revocations within
seconds.
Roles: staff, member, contractor, visitor. Ownership: council-managed,
personal. Reasons: unspecified, keyCompromise, affiliationChanged,
superseded, cessationOfOperation, privilegeWithdrawn (RFC 5280 names or
numbers).
`

// runCA runs `nacd ca SUBCOMMAND`.
func runCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "nacd ca: ", caUsage)
		return exitUsage
	}
	ctx := context.Background()
	switch args[0] {
	case "init":
		return cmdCAInit(args[1:], stdout, stderr)
	case "issue":
		return cmdCAIssue(ctx, args[1:], stdout, stderr)
	case "renew":
		return cmdCARenew(ctx, args[1:], stdout, stderr)
	case "revoke":
		return cmdCARevoke(ctx, args[1:], stdout, stderr)
	case "list":
		return cmdCAList(ctx, args[1:], stdout, stderr)
	case "crl":
		return cmdCACRL(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "nacd ca: unknown subcommand %q\n%s", args[0], caUsage)
		return exitUsage
	}
}

// caFlags are the flags every ca subcommand takes.
type caFlags struct {
	dataDir, store, passphraseFile, crlURL, ocspURL string
}

func newCAFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *caFlags) {
	fs := newFlagSet("ca "+name, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, caUsage) }
	f := &caFlags{}
	fs.StringVar(&f.dataDir, "data-dir", config.DefaultDataDir, "data directory")
	fs.StringVar(&f.store, "store", "", "store: empty for bbolt in the data dir, or a postgres:// DSN")
	fs.StringVar(&f.passphraseFile, "passphrase-file", "", "file with the CA key passphrase (else "+pki.PassphraseEnv+")")
	fs.StringVar(&f.crlURL, "crl-url", "", "CRL distribution point put in issued certificates")
	fs.StringVar(&f.ocspURL, "ocsp-url", "", "OCSP responder URL put in issued certificates")
	return fs, f
}

func (f *caFlags) config() pki.CAConfig {
	return pki.CAConfig{DataDir: f.dataDir, Store: f.store, PassphraseFile: f.passphraseFile, CRLURL: f.crlURL, OCSPURL: f.ocspURL}
}

// openCA opens the CA, bounded so a store held by `nacd serve` fails
// clearly instead of hanging.
func (f *caFlags) open(ctx context.Context) (*pki.CA, error) {
	if _, err := os.Stat(pki.CARootFile(f.dataDir)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s: run nacd ca init --data-dir %s first", f.dataDir, f.dataDir)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ca, err := pki.OpenCA(ctx, f.config())
	if err != nil && f.store == "" && strings.Contains(err.Error(), "timeout") {
		return nil, fmt.Errorf("store in use: is nacd serve running on %s? stop it, or use its admin API (%w)", f.dataDir, err)
	}
	return ca, err
}

func caFail(stderr io.Writer, sub string, err error) int {
	fmt.Fprintf(stderr, "nacd ca %s: %v\n", sub, err)
	return exitFailure
}

func cliActor() string { return "cli:" + currentUser() }

func cmdCAInit(args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("init", stderr)
	force := fs.Bool("force", false, "replace an existing CA (certificates it issued stop verifying)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if err := pki.InitCA(f.config(), *force); err != nil {
		if errors.Is(err, pki.ErrCAExists) {
			fmt.Fprintf(stderr, "nacd ca init: %v\n", err)
			return exitFailure
		}
		return caFail(stderr, "init", err)
	}
	fmt.Fprintf(stdout, "CA created in %s (root %s)\n", pki.CADir(f.dataDir), pki.CARootFile(f.dataDir))
	return exitOK
}

// parseDays parses a Go duration or a number of days ("30d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q (want e.g. 30d or 720h)", s)
	}
	return d, nil
}

// readCSR reads a PEM or DER CSR.
func readCSR(path string) (*x509.CertificateRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%s: PEM block %q, want CERTIFICATE REQUEST", path, b.Type)
		}
		data = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return csr, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func writeChain(path string, chain []*x509.Certificate, stdout io.Writer) error {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if path == "-" {
		_, err := stdout.Write(out)
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func cmdCAIssue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("issue", stderr)
	csrFile := fs.String("csr", "", "PEM or DER CSR of the device key (its SANs must be empty or match the facts)")
	email := fs.String("email", "", "holder's e-mail")
	role := fs.String("role", "", "staff | member | contractor | visitor")
	ownership := fs.String("ownership", "", "council-managed | personal")
	il3 := fs.Bool("il3", false, "holder cleared for IL3")
	uuid := fs.String("device-uuid", "", "device UUID (default: a new random one)")
	name := fs.String("name", "", "device name (certificate CN; default the e-mail)")
	valid := fs.String("valid", "", "certificate lifetime (default 365d)")
	out := fs.String("out", "", "write the chain (PEM: device, intermediate) here; - for stdout")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	var missing []string
	for _, m := range []struct{ n, v string }{{"--csr", *csrFile}, {"--email", *email}, {"--role", *role}, {"--ownership", *ownership}, {"--out", *out}} {
		if m.v == "" {
			missing = append(missing, m.n)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "nacd ca issue: missing %s\n", strings.Join(missing, ", "))
		return exitUsage
	}
	facts := pki.Facts{Email: *email, DeviceUUID: *uuid, DeviceName: *name, Ownership: policy.Ownership(*ownership), Role: policy.Role(*role), ClearanceIL3: *il3}
	if *valid != "" {
		d, err := parseDays(*valid)
		if err != nil {
			fmt.Fprintf(stderr, "nacd ca issue: --valid: %v\n", err)
			return exitUsage
		}
		facts.Validity = d
	}
	csr, err := readCSR(*csrFile)
	if err != nil {
		return caFail(stderr, "issue", err)
	}
	ca, err := f.open(ctx)
	if err != nil {
		return caFail(stderr, "issue", err)
	}
	defer ca.Close()
	chain, err := ca.Issue(ctx, csr, facts, cliActor())
	if err != nil {
		return caFail(stderr, "issue", err)
	}
	if err := writeChain(*out, chain, stdout); err != nil {
		return caFail(stderr, "issue", err)
	}
	id := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs())
	if *out != "-" {
		fmt.Fprintf(stdout, "issued serial %s to %s, device %s (%s, %s, il3=%t), valid until %s -> %s\n",
			id.Serial, id.Email, id.DeviceUUID, id.Role, id.Ownership, id.ClearanceIL3, id.NotAfter.UTC().Format(time.RFC3339), *out)
	}
	return exitOK
}

func cmdCARenew(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("renew", stderr)
	certFile := fs.String("cert", "", "the device's current certificate (PEM or DER)")
	csrFile := fs.String("csr", "", "CSR for the new certificate (same or new key)")
	out := fs.String("out", "", "write the new chain here; - for stdout")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *certFile == "" || *csrFile == "" || *out == "" {
		fmt.Fprintln(stderr, "nacd ca renew: --cert, --csr and --out are required")
		return exitUsage
	}
	cur, err := readCert(*certFile)
	if err != nil {
		return caFail(stderr, "renew", err)
	}
	csr, err := readCSR(*csrFile)
	if err != nil {
		return caFail(stderr, "renew", err)
	}
	ca, err := f.open(ctx)
	if err != nil {
		return caFail(stderr, "renew", err)
	}
	defer ca.Close()
	chain, err := ca.Renew(ctx, cur, csr, cliActor())
	if err != nil {
		return caFail(stderr, "renew", err)
	}
	if err := writeChain(*out, chain, stdout); err != nil {
		return caFail(stderr, "renew", err)
	}
	if *out != "-" {
		fmt.Fprintf(stdout, "renewed %s as serial %s, valid until %s -> %s\n", cur.SerialNumber.Text(16),
			chain[0].SerialNumber.Text(16), chain[0].NotAfter.UTC().Format(time.RFC3339), *out)
	}
	return exitOK
}

func cmdCARevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("revoke", stderr)
	serial := fs.String("serial", "", "certificate serial (hex)")
	device := fs.String("device", "", "device UUID: revoke all its certificates")
	holder := fs.String("holder", "", "holder e-mail: revoke every certificate of every device")
	reasonS := fs.String("reason", "", "RFC 5280 reason (keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, unspecified)")
	server := fs.String("server", DefaultPKIURL, "PKI HTTP API of the running nacd: revoke through it (its live sessions are disconnected) when it listens there")
	caFile := fs.String("ca-file", "", "CA root to verify --server with (default DATA_DIR/ca/root.crt)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	n := 0
	for _, v := range []string{*serial, *device, *holder} {
		if v != "" {
			n++
		}
	}
	if n != 1 || *reasonS == "" {
		fmt.Fprintln(stderr, "nacd ca revoke: exactly one of --serial, --device, --holder, and --reason are required")
		return exitUsage
	}
	reason, err := pki.ParseRevocationReason(*reasonS)
	if err != nil {
		fmt.Fprintf(stderr, "nacd ca revoke: %v\n", err)
		return exitUsage
	}
	api, err := newAdminAPI(*server, f.dataDir, *caFile)
	if err != nil {
		fmt.Fprintf(stderr, "nacd ca revoke: %v\n", err)
		return exitUsage
	}
	if api.listening() {
		// The running nacd revokes, publishes the CRL and disconnects the
		// device's live sessions (RFC 5176), all at once.
		var out pki.RevokeResponse
		if err := api.call(ctx, http.MethodPost, "/v1/admin/revoke", pki.RevokeRequest{Serial: *serial, Device: *device, Holder: *holder, Reason: *reasonS}, &out, http.StatusOK); err != nil {
			return caFail(stderr, "revoke", err)
		}
		printRevoked(stdout, out.Revoked, reason, "via "+api.server+"; nacd disconnects their live sessions")
		return exitOK
	}
	fmt.Fprintf(stderr, "nacd ca revoke: no nacd listening at %s: revoking in the store of %s; live sessions are not disconnected by this command (nacd sessions disconnect, once nacd runs)\n", api.server, f.dataDir)
	ca, err := f.open(ctx)
	if err != nil {
		return caFail(stderr, "revoke", err)
	}
	defer ca.Close()
	var serials []string
	switch {
	case *serial != "":
		if err = ca.Revoke(ctx, *serial, reason, cliActor()); err == nil {
			serials = []string{strings.ToLower(strings.TrimPrefix(*serial, "0x"))}
		}
	case *device != "":
		serials, err = ca.RevokeDevice(ctx, *device, reason, cliActor())
	default:
		serials, err = ca.RevokeHolder(ctx, *holder, reason, cliActor())
	}
	if err != nil {
		return caFail(stderr, "revoke", err)
	}
	printRevoked(stdout, serials, reason, "in the store of "+f.dataDir)
	return exitOK
}

func printRevoked(w io.Writer, serials []string, reason pki.RevocationReason, via string) {
	if len(serials) == 0 {
		fmt.Fprintf(w, "nothing to revoke: already revoked (%s)\n", via)
		return
	}
	fmt.Fprintf(w, "revoked (%s): %s (%s)\n", reason, strings.Join(serials, " "), via)
}

// listRecord is the JSON form of a record in `nacd ca list --json`.
type listRecord struct {
	Serial       string    `json:"serial"`
	Status       string    `json:"status"`
	Kind         string    `json:"kind"`
	Email        string    `json:"email,omitempty"`
	DeviceUUID   string    `json:"device_uuid,omitempty"`
	DeviceName   string    `json:"device_name"`
	Ownership    string    `json:"ownership,omitempty"`
	Role         string    `json:"role,omitempty"`
	ClearanceIL3 bool      `json:"clearance_il3"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	IssuedAt     time.Time `json:"issued_at"`
	IssuedBy     string    `json:"issued_by"`
	RenewedFrom  string    `json:"renewed_from,omitempty"`
	RevokedAt    string    `json:"revoked_at,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
}

func cmdCAList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("list", stderr)
	expiring := fs.String("expiring", "", "only valid certificates expiring within this (e.g. 30d)")
	holder := fs.String("holder", "", "only this holder's certificates")
	device := fs.String("device", "", "only this device's certificates")
	status := fs.String("status", "", "valid | revoked | expired")
	asJSON := fs.Bool("json", false, "JSON output")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	filter := pki.ListFilter{Holder: *holder, Device: *device, Status: pki.RecordStatus(*status)}
	switch filter.Status {
	case "", pki.StatusValid, pki.StatusRevoked, pki.StatusExpired:
	default:
		fmt.Fprintf(stderr, "nacd ca list: --status %q: want valid, revoked or expired\n", *status)
		return exitUsage
	}
	if *expiring != "" {
		d, err := parseDays(*expiring)
		if err != nil {
			fmt.Fprintf(stderr, "nacd ca list: --expiring: %v\n", err)
			return exitUsage
		}
		filter.ExpiringWithin = d
	}
	ca, err := f.open(ctx)
	if err != nil {
		return caFail(stderr, "list", err)
	}
	defer ca.Close()
	rs, err := ca.List(ctx, filter)
	if err != nil {
		return caFail(stderr, "list", err)
	}
	if *asJSON {
		out := make([]listRecord, 0, len(rs))
		for _, r := range rs {
			lr := listRecord{Serial: r.Serial, Status: string(r.Status), Kind: r.Kind, Email: r.Email, DeviceUUID: r.DeviceUUID,
				DeviceName: r.DeviceName, Ownership: string(r.Ownership), Role: string(r.Role), ClearanceIL3: r.ClearanceIL3,
				NotBefore: r.NotBefore, NotAfter: r.NotAfter, IssuedAt: r.IssuedAt, IssuedBy: r.IssuedBy, RenewedFrom: r.RenewedFrom, RevokedBy: r.RevokedBy}
			if r.Status == pki.StatusRevoked {
				lr.RevokedAt, lr.Reason = r.RevokedAt.UTC().Format(time.RFC3339), r.Reason.String()
			}
			out = append(out, lr)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return caFail(stderr, "list", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tSTATUS\tHOLDER\tDEVICE\tNAME\tROLE\tOWNERSHIP\tIL3\tNOT AFTER\tREASON")
	for _, r := range rs {
		reason := ""
		if r.Status == pki.StatusRevoked {
			reason = r.Reason.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\n", r.Serial, r.Status, r.Email, r.DeviceUUID, r.DeviceName,
			r.Role, r.Ownership, r.ClearanceIL3, r.NotAfter.UTC().Format("2006-01-02"), reason)
	}
	if err := tw.Flush(); err != nil {
		return caFail(stderr, "list", err)
	}
	return exitOK
}

func cmdCACRL(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newCAFlagSet("crl", stderr)
	out := fs.String("out", "", "write the CRL (DER) here; default PEM on stdout")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	ca, err := f.open(ctx)
	if err != nil {
		return caFail(stderr, "crl", err)
	}
	defer ca.Close()
	der, err := ca.CRL(ctx)
	if err != nil {
		return caFail(stderr, "crl", err)
	}
	if *out == "" {
		if err := pem.Encode(stdout, &pem.Block{Type: "X509 CRL", Bytes: der}); err != nil {
			return caFail(stderr, "crl", err)
		}
		return exitOK
	}
	if err := os.WriteFile(*out, der, 0o644); err != nil {
		return caFail(stderr, "crl", err)
	}
	fmt.Fprintf(stdout, "CRL number %d written to %s\n", ca.CRLNumber(), *out)
	return exitOK
}
