// Package config owns nacd's configuration: one YAML file, decoded strictly
// (an unknown field is an error), validated once into typed values. The
// running code only ever sees a *Config; nothing reads the raw file later.
//
// Every problem names the field path and, where the file gives it, the line:
//
//	config: line 42: clients[1].networks[0]: "10.0.0.300" is not an IP or CIDR
//
// config must never accept a configuration whose policy could place a
// personal device on il3 (it builds the policy.Policy and runs Validate), and
// must never print or log a shared secret.
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/herts-council/nacd/configs"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// Defaults (design section 6). configs/nacd.example.yaml documents each
// next to its field.
const (
	DefaultDataDir        = "./nacd-data"
	DefaultRADIUSAuth     = "127.0.0.1:1812"
	DefaultRADIUSAcct     = "127.0.0.1:1813"
	DefaultMetrics        = "127.0.0.1:9812"
	DefaultFragmentSize   = 1020
	DefaultMaxMessageSize = 65536
	DefaultCRLRefresh     = 5 * time.Minute
	// DefaultMaxRevocationAge is a week: the life of a weekly-published CRL
	// (a common AD CS schedule) and of the bootstrap CRL, which pki renews
	// after half of it. Lower it when the CA publishes more often.
	DefaultMaxRevocationAge    = 7 * 24 * time.Hour
	DefaultMaxConversations    = 65536
	DefaultConversationTimeout = 30 * time.Second
	DefaultDuplicateWindow     = 5 * time.Second
	DefaultAccessLog           = "stdout"

	// MinSecretLength is the shortest shared secret accepted without
	// allow_weak_secret.
	MinSecretLength = 16

	// BootstrapAnchorName is the trust anchor used when trust_anchors is
	// empty: the bootstrap CA in data_dir/pki.
	BootstrapAnchorName = "nacd-local"

	// SecretFileName is the loopback client's secret in the data dir, for
	// the built-in configuration.
	SecretFileName = "radius-secret"

	// BuiltinSource is Config.Source for the built-in configuration.
	BuiltinSource = "built-in"
)

// Config is a validated configuration.
type Config struct {
	Source  string // the file it was loaded from, or BuiltinSource
	DataDir string

	Listen  Listen
	Clients []Client
	// Sites in file order; Policy.Sites holds the same, keyed by name.
	Sites []policy.Site
	TLS   TLS
	// TrustAnchors are the configured anchors. Empty means: use the
	// bootstrap CA (see UseBootstrap).
	TrustAnchors []pki.AnchorConfig
	// Policy is validated (policy.Policy.Validate returned nil).
	Policy *policy.Policy
	Limits Limits
	Log    Log
	// RadSec is RADIUS over TLS (RFC 6614); RadSec.Enabled false: off.
	RadSec RadSec
	// Accounting configures the session table accounting maintains.
	Accounting Accounting
	// DynAuth configures Disconnect/CoA requests to the NASes (RFC 5176).
	DynAuth DynAuth
	// PKI configures the PKI listener's admin access and invitation mail.
	PKI PKI
}

// Listen holds the listener addresses (host:port).
type Listen struct {
	RADIUSAuth string
	RADIUSAcct string // accounting (RFC 2866), UDP
	Metrics    string
	// RadSec is the RadSec TCP address; "" when RadSec is disabled.
	RadSec string
	// PKI is the PKI HTTP listener (enrolment, admin API, /crl, /ocsp) of
	// nacd's own CA; "" disables it. Default DefaultPKI.
	PKI string
}

// Secret is a shared secret. It never prints: every fmt verb gives
// "[redacted]".
type Secret []byte

// Format implements fmt.Formatter so %v, %s, %x, %q ... never show the bytes.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// String implements fmt.Stringer.
func (Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "[redacted]" }

// MarshalText keeps a secret out of JSON/YAML/zap output.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Client is a RADIUS client (NAS).
type Client struct {
	Name     string
	Networks []netip.Prefix
	Secret   Secret
	// SecretSource says where the secret came from, for summaries:
	// "file <path>" or "inline".
	SecretSource                string
	Site                        string
	RequireMessageAuthenticator bool
	// RadSec lets the client connect over RadSec from its networks with a
	// certificate naming one of RadSecIdentities.
	RadSec           bool
	RadSecIdentities []string
	// CoAPort is the NAS's Disconnect/CoA port (default 3799).
	CoAPort int
	// DynAuth is how nacd ends or moves a live session on this NAS:
	// "disconnect" (default), "coa" (it can re-VLAN a live session) or
	// "none".
	DynAuth string
}

// TLS is the EAP-TLS server configuration.
type TLS struct {
	// CertFile and KeyFile are empty when the bootstrap server certificate
	// is to be used (see UseBootstrap); Certificate is then empty too.
	CertFile, KeyFile string
	Certificate       tls.Certificate
	MinVersion        uint16
	MaxVersion        uint16
	FragmentSize      int
	MaxMessageSize    int
	// CurvePreferences are the key exchange names (validated with
	// eaptls.ParseCurvePreferences); empty: Go's defaults, post-quantum
	// hybrid first.
	CurvePreferences []string
}

// Limits bounds the RADIUS server.
type Limits struct {
	MaxConversations    int
	ConversationTimeout time.Duration
	DuplicateWindow     time.Duration
}

// Log configures logging.
type Log struct {
	Level     zapcore.Level
	AccessLog string // "stdout", "stderr", "syslog" or a file path

	// Audit (tamper-evident access log; see auditlog.go).
	AccessLogMaxSize  int64         // rotate the file at this size (bytes); 0 = never
	AccessLogMaxAge   time.Duration // rotate the file at this age; 0 = never
	OnWriteError      string        // fail_closed_il3 (default) | fail_closed | keep_serving
	AuditSealEvery    int           // seal every N records
	AuditSealInterval time.Duration // and every T with unsealed records
	AccessLogStream   string        // also copy each record to "stdout", "stderr" or "syslog"; "" none
}

// BootstrapTLS reports whether the EAP-TLS server certificate must come
// from the bootstrap PKI.
func (c *Config) BootstrapTLS() bool { return c.TLS.CertFile == "" }

// BootstrapAnchors reports whether the trust anchors must come from the
// bootstrap PKI.
func (c *Config) BootstrapAnchors() bool { return len(c.TrustAnchors) == 0 }

// NeedsBootstrap reports whether serving this configuration needs the
// bootstrap PKI in DataDir.
func (c *Config) NeedsBootstrap() bool {
	return c.BootstrapTLS() || c.BootstrapAnchors() || c.BootstrapRadSecCA()
}

// BootstrapAnchor is the trust anchor made of the bootstrap CA
// (pki.BootstrapResult.Anchor: nacd's own OIDs, il3, its CRL required),
// named BootstrapAnchorName.
func BootstrapAnchor(b *pki.BootstrapResult) pki.AnchorConfig {
	a := b.Anchor()
	a.Name = BootstrapAnchorName
	if a.CRLRefresh == 0 {
		a.CRLRefresh = DefaultCRLRefresh
	}
	return a
}

// UseBootstrap fills in what the configuration leaves to the bootstrap PKI:
// the server certificate and key, and the trust anchor.
func (c *Config) UseBootstrap(b *pki.BootstrapResult) error {
	if b == nil {
		return errors.New("config: no bootstrap PKI")
	}
	if c.BootstrapTLS() {
		cert, err := tls.LoadX509KeyPair(b.ServerCert, b.ServerKey)
		if err != nil {
			return fmt.Errorf("config: load bootstrap server certificate %s: %w", b.ServerCert, err)
		}
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.Certificate = b.ServerCert, b.ServerKey, cert
	}
	if c.BootstrapAnchors() {
		c.TrustAnchors = []pki.AnchorConfig{BootstrapAnchor(b)}
	}
	return c.useBootstrapRadSec(b)
}

// Load reads and validates the configuration file at path. dataDir, when
// not empty, overrides the file's data_dir (the --data-dir flag). A
// configuration with problems gives an *Error listing all of them.
func Load(path, dataDir string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, dataDir)
}

// Parse validates a configuration document; source names it in Config.Source.
func Parse(data []byte, source, dataDir string) (*Config, error) {
	return parse(data, source, func(r *rawConfig) {
		if dataDir != "" {
			r.DataDir = dataDir
		}
	})
}

// Builtin is the built-in configuration (configs/nacd.example.yaml) for
// data dir dataDir (DefaultDataDir when empty): the loopback client's
// secret is dataDir/radius-secret, which must exist (see EnsureSecretFile).
func Builtin(dataDir string) (*Config, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return BuiltinWithSecretFile(dataDir, SecretPath(dataDir))
}

// BuiltinWithSecretFile is Builtin with the loopback client's secret read
// from secretFile (e.g. to check the built-in configuration before serve
// has generated the secret).
func BuiltinWithSecretFile(dataDir, secretFile string) (*Config, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return parse(configs.Example, BuiltinSource, func(r *rawConfig) {
		r.DataDir = dataDir
		for i := range r.Clients {
			r.Clients[i].SecretFile = secretFile
		}
	})
}

// SecretPath is where the built-in configuration keeps the loopback client's
// secret.
func SecretPath(dataDir string) string { return filepath.Join(dataDir, SecretFileName) }

// EnsureSecretFile creates path holding a new random secret (32 hex
// characters, mode 0600, directories created 0700) unless it exists. It
// returns the secret and whether it was created now.
func EnsureSecretFile(path string) (secret string, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		return string(bytes.TrimSpace(b)), false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("config: read secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("config: create secret: %w", err)
	}
	secret, err = randomSecret()
	if err != nil {
		return "", false, fmt.Errorf("config: create secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("config: create secret: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("config: write secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("config: write secret: %w", err)
	}
	return secret, true, nil
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlNotFound = regexp.MustCompile(`^field \S+ not found in type`)
)

func parse(data []byte, source string, patch func(*rawConfig)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		ps := &problems{doc: newTree(nil)}
		addYAMLError(ps, err)
		return nil, ps.err(source)
	}
	t := newTree(&doc)
	ps := &problems{doc: t}
	if t.root != nil && t.root.Kind != yaml.MappingNode {
		ps.addLine(t.root.Line, "", "the file must be a YAML mapping (data_dir:, listen:, clients:, ...)")
		return nil, ps.err(source)
	}

	var raw rawConfig
	t.unknownFields(reflect.TypeOf(raw), ps)
	if t.root != nil {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
			addYAMLError(ps, err)
		}
	}
	if len(ps.list) > 0 {
		// Fields that did not decode would only give misleading follow-up
		// problems: report these first.
		return nil, ps.err(source)
	}
	if patch != nil {
		patch(&raw)
	}
	cfg := build(&raw, ps)
	cfg.Source = source
	if err := ps.err(source); err != nil {
		return nil, err
	}
	return cfg, nil
}

// addYAMLError turns a yaml error into problems, one per message, with the
// field path where the line gives it. Unknown-field messages are skipped:
// unknownFields reported them with their path already.
func addYAMLError(ps *problems, err error) {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for _, m := range msgs {
		sub := yamlLine.FindStringSubmatch(m)
		if sub == nil {
			ps.addLine(0, "", m)
			continue
		}
		line, _ := strconv.Atoi(sub[1])
		msg := sub[2]
		if te != nil && yamlNotFound.MatchString(msg) {
			if hasLine(ps.list, line) {
				continue
			}
		}
		ps.addLine(line, ps.doc.paths[line], msg)
	}
}

func hasLine(list []Problem, line int) bool {
	for _, p := range list {
		if p.Line == line {
			return true
		}
	}
	return false
}
