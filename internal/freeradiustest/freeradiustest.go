// Package freeradiustest runs a real FreeRADIUS 3.2 server on loopback as the
// reference EAP-TLS server for interop tests: it writes a minimal,
// self-contained raddb (EAP-TLS only, one client, a VLAN policy keyed on the
// client certificate's common name), starts `freeradius -f` in the
// foreground, waits until it answers Status-Server and stops it when the test
// ends.
//
// It is test plumbing only: nothing in a production path may import it. It
// never touches /etc/freeradius and never listens beyond 127.0.0.1.
package freeradiustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testtool"
)

// Config describes the FreeRADIUS server to run. File paths are PEM files the
// caller wrote (for example with internal/testpki).
type Config struct {
	// Secret is the shared secret of the single client 127.0.0.1
	// (default "testing123").
	Secret string
	// CACertFile holds the CA certificates that client certificates must
	// chain to (roots, optionally intermediates).
	CACertFile string
	// ServerCertFile is the server certificate, optionally followed by its
	// intermediates; ServerKeyFile its private key.
	ServerCertFile, ServerKeyFile string
	// CRLFile, when set, is a PEM file of CRLs (X509 CRL blocks) checked
	// for every client certificate (check_crl = yes). It is appended to the
	// CA bundle, so it must cover every CA that issues client certificates.
	CRLFile string
	// TLSMinVersion and TLSMaxVersion: "1.2" or "1.3" (defaults 1.2 and 1.3).
	TLSMinVersion, TLSMaxVersion string
	// FragmentSize of EAP-TLS messages sent by the server (default 1020).
	FragmentSize int
	// VLANByCommonName maps a client certificate common name to the VLAN
	// returned in Tunnel-Private-Group-Id; DefaultVLAN (0: none) is
	// returned for any other accepted certificate.
	VLANByCommonName map[string]int
	DefaultVLAN      int
	// SessionTimeout, when non-zero, is returned in Session-Timeout.
	SessionTimeout time.Duration
	// Debug runs `freeradius -X` (single-threaded, full debug log);
	// otherwise `-f -l stdout` with a thread pool of Threads (default 4).
	Debug   bool
	Threads int
	// Proxy, when set, turns the server into a RADIUS proxy: every
	// Access-Request is forwarded to Proxy.Addr (no EAP here; the CA and
	// server certificate fields are then unused).
	Proxy *Proxy
	// RadSec, when set (EAP server mode only), adds a RADIUS over TLS
	// listener (RFC 6614) next to the UDP one; see Server.RadSecAddr.
	RadSec *RadSec
	// StartTimeout bounds the wait for the first Status-Server answer
	// (default 15 s).
	StartTimeout time.Duration
}

// Proxy is the home server a proxying FreeRADIUS forwards to.
type Proxy struct {
	Addr   string // "127.0.0.1:port" (UDP, or TCP with TLS)
	Secret string // shared secret between the proxy and the home server (UDP)
	// TLS, when set, makes the proxy talk RadSec (RFC 6614) to the home
	// server: TCP + TLS with this client certificate, secret "radsec".
	TLS *ProxyTLS
}

// ProxyTLS is the proxy's RadSec client side.
type ProxyTLS struct {
	CertFile, KeyFile string // client certificate (chain) and key
	CAFile            string // CAs the home server's certificate must chain to
}

// RadSec is a RADIUS over TLS listener of the EAP server.
type RadSec struct {
	CertFile, KeyFile string // server certificate (chain) and key
	CAFile            string // CAs the clients' certificates must chain to
	// Port on 127.0.0.1; 0 lets Start pick a free one.
	Port int
}

// Server is a running FreeRADIUS.
type Server struct {
	// Addr is the authentication listener, "127.0.0.1:<port>".
	Addr string
	// RadSecAddr is the RadSec listener, "127.0.0.1:<port>" ("" if none).
	RadSecAddr string
	Secret     string
	// Dir is the generated raddb directory.
	Dir string

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // exit status, valid after done is closed
}

// Binary returns the path of the FreeRADIUS daemon, skipping or failing the
// test (per internal/testtool) when it is not installed. Debian installs it
// as /usr/sbin/freeradius, which is often not on a normal user's PATH.
func Binary(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"freeradius", "radiusd"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
	}
	return testtool.Require(tb, "freeradius")
}

// Start writes the configuration, starts FreeRADIUS on a free loopback port,
// waits until it answers Status-Server and registers its shutdown with
// tb.Cleanup. On failure it fails the test with FreeRADIUS's own output.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	bin := Binary(tb)
	cfg.defaults()
	if cfg.Proxy == nil && (cfg.CACertFile == "" || cfg.ServerCertFile == "" || cfg.ServerKeyFile == "") {
		tb.Fatalf("freeradiustest: CACertFile, ServerCertFile and ServerKeyFile are required")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		s, err := start(tb, bin, cfg)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("freeradiustest: %v", lastErr)
	return nil
}

func (c *Config) defaults() {
	if c.Secret == "" {
		c.Secret = "testing123"
	}
	if c.TLSMinVersion == "" {
		c.TLSMinVersion = "1.2"
	}
	if c.TLSMaxVersion == "" {
		c.TLSMaxVersion = "1.3"
	}
	if c.FragmentSize == 0 {
		c.FragmentSize = 1020
	}
	if c.Threads <= 0 {
		c.Threads = 4
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 15 * time.Second
	}
}

func start(tb testing.TB, bin string, cfg Config) (*Server, error) {
	tb.Helper()
	port, err := FreeUDPPort()
	if err != nil {
		return nil, err
	}
	if cfg.RadSec != nil {
		rs := *cfg.RadSec
		if rs.Port == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			rs.Port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		cfg.RadSec = &rs
	}
	dir, err := os.MkdirTemp("", "freeradiustest-")
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := WriteConfig(dir, port, cfg); err != nil {
		return nil, err
	}
	args := []string{"-f", "-l", "stdout", "-d", dir, "-n", "radiusd"}
	if cfg.Debug {
		args = []string{"-X", "-d", dir, "-n", "radiusd"}
	}
	s := &Server{
		Addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Secret: cfg.Secret,
		Dir:    dir,
		log:    &syncBuffer{},
		done:   make(chan struct{}),
	}
	if cfg.RadSec != nil {
		s.RadSecAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.RadSec.Port))
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel() // died during startup: stop waiting at once
		case <-ctx.Done():
		}
	}()
	if err := eapoltest.WaitStatusServer(ctx, s.Addr, s.Secret); err != nil {
		s.stop()
		return nil, fmt.Errorf("freeradius did not become ready on %s: %v (exit: %v)\n--- freeradius output ---\n%s", s.Addr, err, s.err, s.log.String())
	}
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("--- freeradius output (%s) ---\n%s", s.Addr, s.Log())
		}
	})
	return s, nil
}

// Log returns everything FreeRADIUS wrote so far.
func (s *Server) Log() string { return s.log.String() }

// Stop terminates the server (idempotent; also done by the test cleanup).
func (s *Server) Stop() { s.stop() }

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("probe free UDP port: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// WriteConfig writes a complete raddb for cfg into dir, listening for
// authentication on 127.0.0.1:port. Exposed so that a benchmark or a person
// debugging can run the same configuration by hand with
// `freeradius -X -d dir -n radiusd`.
func WriteConfig(dir string, port int, cfg Config) error {
	cfg.defaults()
	if strings.ContainsAny(cfg.Secret, "\"\\\n") {
		return errors.New("secret must not contain quotes, backslashes or newlines")
	}
	for _, sub := range []string{"log", "run", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	if cfg.Proxy != nil {
		host, portStr, err := net.SplitHostPort(cfg.Proxy.Addr)
		if err != nil {
			return fmt.Errorf("proxy address %q: %w", cfg.Proxy.Addr, err)
		}
		hp, err := strconv.Atoi(portStr)
		if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("proxy address %q: want a loopback IP and port", cfg.Proxy.Addr)
		}
		if strings.ContainsAny(cfg.Proxy.Secret+cfg.Secret, "\"\\\n") {
			return fmt.Errorf("secrets must not contain quotes, backslashes or newlines")
		}
		homeSecret, transport := cfg.Proxy.Secret, "\tproto = udp\n"
		if t := cfg.Proxy.TLS; t != nil {
			homeSecret = "radsec"
			transport = fmt.Sprintf(proxyTLSConf, t.KeyFile, t.CertFile, t.CAFile)
		}
		conf := fmt.Sprintf(headerConf, dir, cfg.Threads, cfg.Threads*2, cfg.Secret) +
			fmt.Sprintf(proxyConf, host, hp, homeSecret, port, transport)
		return os.WriteFile(filepath.Join(dir, "radiusd.conf"), []byte(conf), 0o600)
	}
	crl := ""
	if cfg.CRLFile != "" {
		// The PEM CRLs go into the ca_file bundle: OpenSSL's
		// load_verify_locations reads certificates and CRLs alike, so no
		// hashed ca_path directory is needed.
		crl = "\t\t\tcheck_crl = yes\n"
	}
	caBundle := filepath.Join(dir, "certs", "ca.pem")
	var bundle bytes.Buffer
	for _, f := range []string{cfg.CACertFile, cfg.CRLFile} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		bundle.Write(b)
		bundle.WriteByte('\n')
	}
	if err := os.WriteFile(caBundle, bundle.Bytes(), 0o644); err != nil {
		return err
	}

	var policyConf strings.Builder
	vlanReply := func(indent string, vlan int) {
		fmt.Fprintf(&policyConf, "%supdate reply {\n", indent)
		fmt.Fprintf(&policyConf, "%s\t&Tunnel-Type := VLAN\n", indent)
		fmt.Fprintf(&policyConf, "%s\t&Tunnel-Medium-Type := IEEE-802\n", indent)
		fmt.Fprintf(&policyConf, "%s\t&Tunnel-Private-Group-Id := \"%d\"\n", indent, vlan)
		fmt.Fprintf(&policyConf, "%s}\n", indent)
	}
	names := make([]string, 0, len(cfg.VLANByCommonName))
	for n := range cfg.VLANByCommonName {
		if strings.ContainsAny(n, "\"\\\n%") {
			return fmt.Errorf("common name %q: quote, backslash, %% and newline are not supported", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		kw := "elsif"
		if i == 0 {
			kw = "if"
		}
		fmt.Fprintf(&policyConf, "\t\t%s (&TLS-Client-Cert-Common-Name == \"%s\") {\n", kw, n)
		vlanReply("\t\t\t", cfg.VLANByCommonName[n])
		policyConf.WriteString("\t\t}\n")
	}
	if cfg.DefaultVLAN != 0 {
		if len(names) > 0 {
			policyConf.WriteString("\t\telse {\n")
			vlanReply("\t\t\t", cfg.DefaultVLAN)
			policyConf.WriteString("\t\t}\n")
		} else {
			vlanReply("\t\t", cfg.DefaultVLAN)
		}
	}
	if cfg.SessionTimeout > 0 {
		fmt.Fprintf(&policyConf, "\t\tupdate reply {\n\t\t\t&Session-Timeout := %d\n\t\t}\n", int(cfg.SessionTimeout/time.Second))
	}

	radsecListen, radsecClients := "", ""
	if rs := cfg.RadSec; rs != nil {
		if rs.Port == 0 {
			return errors.New("RadSec.Port must be set (Start picks one)")
		}
		radsecListen = fmt.Sprintf(radsecListenConf, rs.Port, rs.KeyFile, rs.CertFile, rs.CAFile)
		radsecClients = radsecClientsConf
	}
	conf := fmt.Sprintf(headerConf, dir, cfg.Threads, cfg.Threads*2, cfg.Secret) +
		radsecClients + fmt.Sprintf(eapConf,
		cfg.ServerKeyFile, cfg.ServerCertFile, caBundle, crl,
		cfg.FragmentSize, cfg.TLSMinVersion, cfg.TLSMaxVersion,
		port, policyConf.String(), radsecListen)
	return os.WriteFile(filepath.Join(dir, "radiusd.conf"), []byte(conf), 0o600)
}

// radiusdConf is a self-contained radiusd.conf: no $INCLUDEs of the system
// raddb, no user/group switch, logs and pid file inside the directory.
const headerConf = `# generated by internal/freeradiustest
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = ${exec_prefix}/sbin
raddbdir = %[1]s
confdir = ${raddbdir}
modconfdir = ${confdir}/mods-config
logdir = ${raddbdir}/log
radacctdir = ${logdir}/radacct
run_dir = ${raddbdir}/run
db_dir = ${raddbdir}
certdir = ${raddbdir}/certs
cadir = ${raddbdir}/certs
libdir = /usr/lib/freeradius
pidfile = ${run_dir}/radiusd.pid
name = radiusd
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no

log {
	destination = stdout
	colourise = no
	file = ${logdir}/radius.log
	stripped_names = no
	auth = yes
	auth_badpass = no
	auth_goodpass = no
}

security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
	require_message_authenticator = auto
}

thread pool {
	start_servers = %[2]d
	max_servers = %[3]d
	min_spare_servers = 1
	max_spare_servers = %[3]d
	max_requests_per_server = 0
	auto_limit_acct = no
}

client localhost {
	ipaddr = 127.0.0.1
	proto = udp
	secret = "%[4]s"
	require_message_authenticator = yes
	nas_type = other
}

`

// eapConf is the EAP-TLS server.
const eapConf = `modules {
	eap {
		default_eap_type = tls
		timer_expire = 60
		ignore_unknown_eap_types = no
		max_sessions = ${max_requests}

		tls-config tls-common {
			private_key_file = %[1]s
			certificate_file = %[2]s
			ca_file = %[3]s
%[4]s			cipher_list = "DEFAULT"
			cipher_server_preference = no
			ecdh_curve = ""
			fragment_size = %[5]d
			include_length = yes
			tls_min_version = "%[6]s"
			tls_max_version = "%[7]s"
			cache {
				enable = no
			}
			verify {
			}
			ocsp {
				enable = no
			}
		}
		tls {
			tls = tls-common
		}
	}
}

instantiate {
}

server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %[8]d
	}
%[10]s
	authorize {
		eap {
			ok = return
		}
	}

	authenticate {
		Auth-Type eap {
			eap
		}
	}

	post-auth {
		update reply {
			&User-Name := "%%{TLS-Client-Cert-Common-Name}"
		}
%[9]s
		Post-Auth-Type REJECT {
			eap
		}
	}
}
`

// proxyConf proxies every Access-Request to one home server (nacd, say),
// as a RADIUS proxy between the NAS and the real server would. FreeRADIUS
// adds Proxy-State and requires Message-Authenticator on the replies.
const proxyConf = `proxy_requests = yes

proxy server {
	default_fallback = no
}

home_server upstream {
	type = auth
	ipaddr = %[1]s
	port = %[2]d
	secret = "%[3]s"
	require_message_authenticator = yes
	response_window = 20
	zombie_period = 40
	revive_interval = 3600
	status_check = none
%[5]s}

home_server_pool upstream_pool {
	type = fail-over
	home_server = upstream
}

realm upstream {
	auth_pool = upstream_pool
	nostrip
}

modules {
}

instantiate {
}

server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %[4]d
	}

	authorize {
		update control {
			&Proxy-To-Realm := "upstream"
		}
	}

	authenticate {
	}

	post-proxy {
	}
}
`

// proxyTLSConf is the RadSec client side of the home_server section.
const proxyTLSConf = `	proto = tcp
	tls {
		private_key_file = %[1]s
		certificate_file = %[2]s
		ca_file = %[3]s
		fragment_size = 8192
		cipher_list = "DEFAULT"
		tls_min_version = "1.2"
		tls_max_version = "1.3"
		check_crl = no
	}
`

// radsecListenConf is a RadSec listener of the EAP server.
const radsecListenConf = `
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %[1]d
		proto = tcp
		clients = radsec
		tls {
			private_key_file = %[2]s
			certificate_file = %[3]s
			ca_file = %[4]s
			require_client_cert = yes
			fragment_size = 8192
			cipher_list = "DEFAULT"
			tls_min_version = "1.2"
			tls_max_version = "1.3"
			cache {
				enable = no
			}
			verify {
			}
		}
	}
`

// radsecClientsConf lets the loopback RadSec clients in (secret "radsec").
const radsecClientsConf = `
clients radsec {
	client loopback {
		ipaddr = 127.0.0.1
		proto = tls
		secret = radsec
	}
}
`

// syncBuffer is a bytes.Buffer safe for the process's writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
