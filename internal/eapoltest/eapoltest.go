// Package eapoltest drives the real eapol_test binary (wpa_supplicant's
// RADIUS/EAP test client) against a RADIUS server on loopback and parses what
// it reports: the final SUCCESS/FAILURE verdict, the attributes of the
// Access-Accept, the MPPE key check and the negotiated TLS version.
//
// It is test plumbing for interop tests: nothing in a production path may
// import it. It must never report a pass it did not see: output it cannot
// parse is an error, and every run is bounded by a context and a timeout.
package eapoltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testtool"
)

// Attribute is an extra RADIUS attribute sent in every Access-Request
// (eapol_test -N type:syntax:value).
type Attribute struct {
	Type int
	// Syntax is 's' (string), 'd' (integer) or 'x' (hex octets).
	Syntax byte
	Value  string
}

func (a Attribute) flag() (string, error) {
	if a.Type < 1 || a.Type > 255 {
		return "", fmt.Errorf("attribute type %d out of range", a.Type)
	}
	switch a.Syntax {
	case 's', 'd', 'x':
	default:
		return "", fmt.Errorf("attribute %d: syntax %q is not s, d or x", a.Type, a.Syntax)
	}
	return fmt.Sprintf("-N%d:%c:%s", a.Type, a.Syntax, a.Value), nil
}

// CalledStationID returns a Called-Station-Id attribute in the usual
// "AA-BB-CC-DD-EE-FF:SSID" form (RFC 3580 section 3.20).
func CalledStationID(bssid, ssid string) Attribute {
	v := bssid
	if ssid != "" {
		v += ":" + ssid
	}
	return Attribute{Type: 30, Syntax: 's', Value: v}
}

// NASIdentifier returns a NAS-Identifier attribute.
func NASIdentifier(id string) Attribute { return Attribute{Type: 32, Syntax: 's', Value: id} }

// Options configures one eapol_test run.
type Options struct {
	// Binary is the eapol_test path; empty means look it up on PATH.
	Binary string
	// Server is the RADIUS authentication server, "127.0.0.1:port".
	Server string
	Secret string
	// CACert is the PEM file of CAs that the server certificate must chain
	// to; empty disables server certificate checks (only for tests that
	// are about something else).
	CACert string
	// ClientCert is the client certificate, or a chain file (leaf first,
	// then intermediates); ClientKey its private key.
	ClientCert, ClientKey string
	// Identity is the EAP identity (default "anonymous").
	Identity string
	// TLSVersion restricts the TLS version: "1.2", "1.3" or "" (supplicant
	// default).
	TLSVersion string
	// FragmentSize is wpa_supplicant's fragment_size (0: its default, 1398).
	FragmentSize int
	// Timeout bounds the whole run: eapol_test's own -t (rounded up to a
	// second) and a hard kill shortly after (default 15 s).
	Timeout time.Duration
	// ClientIP is the local address eapol_test sends from and puts in
	// NAS-IP-Address (-A); it must be a loopback address, e.g. 127.0.0.2
	// to look like a second NAS. Empty: chosen by the kernel.
	ClientIP string
	// MAC is the supplicant MAC (Calling-Station-Id); default 02:00:00:00:00:01.
	MAC string
	// Attributes are extra attributes sent in every Access-Request.
	Attributes []Attribute
	// Reauths is the number of re-authentications after the first one
	// (eapol_test -r; default 0).
	Reauths int
	// NoMPPE tells eapol_test not to expect MPPE keys (-n).
	NoMPPE bool
	// EAPMethod is the only EAP method the supplicant offers (default
	// "TLS"); e.g. "PEAP" makes it NAK the server's EAP-TLS Start.
	EAPMethod string
	// DisableExtendedMasterSecret makes OpenSSL leave out the Extended
	// Master Secret extension (RFC 7627) from the ClientHello, via an
	// OPENSSL_CONF with Options = -ExtendedMasterSecret: a TLS 1.2 client
	// without EMS, as older supplicants are.
	DisableExtendedMasterSecret bool
	// ServerChainFile, when set, receives the server certificate chain
	// eapol_test got (-o).
	ServerChainFile string
	// Phase1 is appended verbatim to the computed phase1 flags.
	Phase1 string
}

// Result is what eapol_test reported.
type Result struct {
	// Success is true only when eapol_test printed its final "SUCCESS"
	// line (EAP success, and the MPPE keys matched unless NoMPPE).
	Success bool
	// Code is the code of the last RADIUS message received, e.g.
	// "Access-Accept", "Access-Reject", "Access-Challenge" ("" if none).
	Code string
	// Accept holds the attributes of the Access-Accept (nil if none came).
	Accept *Attributes
	// MPPEKeysOK is true when eapol_test printed "MPPE keys OK: 1  mismatch: 0".
	MPPEKeysOK bool
	// MPPEChecked is true when a "MPPE keys OK" line was printed at all.
	MPPEChecked bool
	// MSK is the MSK the supplicant derived (eapol_test prints it).
	MSK []byte
	// MPPESendKey and MPPERecvKey are the keys eapol_test decrypted from
	// the Access-Accept (see CheckKeys).
	MPPESendKey, MPPERecvKey []byte
	// TLSVersion is the negotiated TLS version when printed ("1.2", "1.3").
	TLSVersion string
	// ClientFragments counts EAP-TLS messages the supplicant sent with the
	// More-fragments flag; ServerFragments those it received with it.
	ClientFragments, ServerFragments int
	// MaxServerEAPLength is the longest EAP-Request/TLS packet received
	// (EAP header included).
	MaxServerEAPLength int
	// CommitmentMessage is true when the supplicant received and
	// acknowledged the TLS 1.3 commitment message (protected success
	// indication, one application-data byte 0x00, RFC 9190 section 2.5).
	CommitmentMessage bool
	// ClientHelloExtensions and ServerHelloExtensions list the TLS
	// extension types of the first ClientHello sent and ServerHello
	// received (nil when not in the output).
	ClientHelloExtensions, ServerHelloExtensions []uint16
	// ServerCertificates and ClientCertificates are the DER certificates
	// of the first Certificate message received and sent, in the order
	// on the wire (leaf first); nil when none was exchanged.
	ServerCertificates, ClientCertificates [][]byte
	// Resumed is true when a TLS handshake was a session resumption.
	Resumed bool
	// EAPSuccesses counts EAP-Success events (1 per authentication; more
	// with Reauths).
	EAPSuccesses int
	// TimedOut is true when eapol_test gave up waiting ("EAPOL test timed
	// out"): the server dropped or never answered a request. A timed-out
	// run is not a reject.
	TimedOut bool
	// ExitCode is eapol_test's exit status (0 on success).
	ExitCode int
	// Messages are the RADIUS messages received, in order.
	Messages []Message
	// Raw is the complete output.
	Raw string
}

// Rejected reports whether the server answered with an Access-Reject (as
// opposed to timing out or accepting).
func (r *Result) Rejected() bool {
	return !r.Success && !r.TimedOut && r.Code == "Access-Reject"
}

// Attributes are the attributes of an Access-Accept as eapol_test dumped them.
type Attributes struct {
	UserName             string
	Class                [][]byte
	SessionTimeout       int // seconds; 0 if absent
	TunnelType           int // 13 is VLAN; 0 if absent
	TunnelMediumType     int // 6 is IEEE-802
	TunnelPrivateGroupID string
	// MPPESendKey/MPPERecvKey report the presence of the Microsoft
	// vendor-specific key attributes (values are encrypted).
	MPPESendKey, MPPERecvKey bool
	// Types lists every attribute type in order of appearance.
	Types []int
}

// ErrUnparsable is returned (wrapped) when eapol_test's output does not
// contain a verdict this package recognises.
var ErrUnparsable = errors.New("eapol_test output not understood")

// Require returns the eapol_test path or skips/fails the test per
// internal/testtool.
func Require(tb testing.TB) string {
	tb.Helper()
	return testtool.Require(tb, "eapol_test")
}

var reMethod = regexp.MustCompile(`^[A-Z0-9-]{2,16}$`)

// opensslNoEMS is an OpenSSL 3 configuration that disables the Extended
// Master Secret extension for every SSL_CTX (SSL_CONF "Options").
const opensslNoEMS = `openssl_conf = nacd_eapoltest
[nacd_eapoltest]
ssl_conf = nacd_ssl
[nacd_ssl]
system_default = nacd_ssl_default
[nacd_ssl_default]
Options = -ExtendedMasterSecret
`

// Config renders the wpa_supplicant network block for o.
func (o Options) Config() (string, error) {
	q := func(s string) (string, error) {
		if strings.ContainsAny(s, "\"\n\r") {
			return "", fmt.Errorf("value %q contains a quote or newline", s)
		}
		return `"` + s + `"`, nil
	}
	ident := o.Identity
	if ident == "" {
		ident = "anonymous"
	}
	method := o.EAPMethod
	if method == "" {
		method = "TLS"
	}
	if !reMethod.MatchString(method) {
		return "", fmt.Errorf("EAP method %q is not a wpa_supplicant method name", method)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "network={\n\tkey_mgmt=IEEE8021X\n\teap=%s\n\teapol_flags=0\n", method)
	line := func(k, v string) error {
		qv, err := q(v)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		fmt.Fprintf(&b, "\t%s=%s\n", k, qv)
		return nil
	}
	if err := line("identity", ident); err != nil {
		return "", err
	}
	for _, kv := range [][2]string{{"ca_cert", o.CACert}, {"client_cert", o.ClientCert}, {"private_key", o.ClientKey}} {
		if kv[1] == "" {
			continue
		}
		if err := line(kv[0], kv[1]); err != nil {
			return "", err
		}
	}
	phase1 := []string{"tls_disable_tlsv1_0=1", "tls_disable_tlsv1_1=1"}
	switch o.TLSVersion {
	case "":
	case "1.2":
		phase1 = append(phase1, "tls_disable_tlsv1_2=0", "tls_disable_tlsv1_3=1")
	case "1.3":
		phase1 = append(phase1, "tls_disable_tlsv1_2=1", "tls_disable_tlsv1_3=0")
	default:
		return "", fmt.Errorf("TLSVersion %q: want \"1.2\", \"1.3\" or \"\"", o.TLSVersion)
	}
	if o.Phase1 != "" {
		phase1 = append(phase1, o.Phase1)
	}
	if err := line("phase1", strings.Join(phase1, " ")); err != nil {
		return "", err
	}
	if o.FragmentSize < 0 || o.FragmentSize > 0 && o.FragmentSize < 100 {
		return "", fmt.Errorf("FragmentSize %d is out of range", o.FragmentSize)
	}
	if o.FragmentSize > 0 {
		fmt.Fprintf(&b, "\tfragment_size=%d\n", o.FragmentSize)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// Args returns eapol_test's command-line arguments for o, reading the
// network block from confPath.
func (o Options) Args(confPath string) ([]string, error) {
	host, port, err := net.SplitHostPort(o.Server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", o.Server, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("server %q: only loopback IP addresses are allowed", o.Server)
	}
	if o.Secret == "" {
		return nil, errors.New("secret is empty")
	}
	if o.Reauths < 0 || o.Reauths > 10 {
		return nil, fmt.Errorf("Reauths %d out of range 0..10", o.Reauths)
	}
	mac := o.MAC
	if mac == "" {
		mac = "02:00:00:00:00:01"
	}
	args := []string{
		"-c", confPath,
		"-a", host,
		"-p", port,
		"-s", o.Secret,
		"-r", strconv.Itoa(o.Reauths),
		"-t", strconv.Itoa(o.timeoutSeconds()),
		"-M", mac,
	}
	if o.ClientIP != "" {
		if ip := net.ParseIP(o.ClientIP); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("client IP %q: only loopback IP addresses are allowed", o.ClientIP)
		}
		args = append(args, "-A", o.ClientIP)
	}
	if o.NoMPPE {
		args = append(args, "-n")
	}
	if o.ServerChainFile != "" {
		args = append(args, "-o", o.ServerChainFile)
	}
	for _, a := range o.Attributes {
		f, err := a.flag()
		if err != nil {
			return nil, err
		}
		args = append(args, f)
	}
	return args, nil
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 15 * time.Second
	}
	return o.Timeout
}

func (o Options) timeoutSeconds() int {
	s := int((o.timeout() + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Run runs eapol_test once and parses its output. An error means the run
// could not be judged (bad options, eapol_test missing, killed by timeout,
// output not understood); an authentication that failed is a Result with
// Success false and a nil error.
func Run(ctx context.Context, o Options) (*Result, error) {
	bin := o.Binary
	if bin == "" {
		p, err := exec.LookPath("eapol_test")
		if err != nil {
			return nil, fmt.Errorf("eapol_test: %w", err)
		}
		bin = p
	}
	conf, err := o.Config()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "eapoltest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	confPath := filepath.Join(dir, "eapol_test.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	args, err := o.Args(confPath)
	if err != nil {
		return nil, err
	}

	// eapol_test stops itself after -t seconds; the context kills it a
	// little later if it does not.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(o.timeoutSeconds())*time.Second+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if o.DisableExtendedMasterSecret {
		cnf := filepath.Join(dir, "openssl.cnf")
		if err := os.WriteFile(cnf, []byte(opensslNoEMS), 0o600); err != nil {
			return nil, err
		}
		cmd.Env = append(os.Environ(), "OPENSSL_CONF="+cnf)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("eapol_test killed: %w\n--- output ---\n%s", ctx.Err(), out)
	}
	exit := 0
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			return nil, fmt.Errorf("run eapol_test: %w", runErr)
		}
		exit = ee.ExitCode()
	}
	res, err := Parse(string(out))
	if err != nil {
		return res, err
	}
	res.ExitCode = exit
	if res.Success != (exit == 0) {
		return res, fmt.Errorf("%w: verdict %v contradicts exit status %d", ErrUnparsable, res.Success, exit)
	}
	return res, nil
}
