package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/herts-council/nacd/radius/loadtest"
)

// loadtestUsage is printed by `nacd loadtest -h`.
const loadtestUsage = `usage: nacd loadtest --server HOST:PORT (--secret S | --secret-file F)
         (--cert FILE --key FILE [--chain FILE] ... | --personas DIR)
         (--ca FILE [--server-name NAME] | --insecure-skip-verify)
         [--tls 1.2|1.3|any] [--concurrency N | --rate R [--concurrency MAX]]
         (--count N | --duration D) [--fragment-size B] [--timeout D] [--retries N]
         [--curves LIST] [--called-station-id ID] [--json] [--progress]

Runs full EAP-TLS authentications against one RADIUS server and reports
authentications/s, accepts/rejects/timeouts/errors, latency and VLANs. Every
Access-Accept is verified (Response Authenticator, Message-Authenticator,
MPPE keys against the client's own MSK); a failed check is an error.
A LAB TOOL: point it at loopback or a lab server, never at production.
It stops at --count or --duration (one is required). Exit 0 when every
authentication ended in a verified accept or a reject, 1 otherwise.
`

// ltFiles is a repeatable file flag.
type ltFiles []string

func (f *ltFiles) String() string     { return strings.Join(*f, ",") }
func (f *ltFiles) Set(v string) error { *f = append(*f, v); return nil }

// runLoadtest is `nacd loadtest`.
func runLoadtest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nacd loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, loadtestUsage, "\nflags:\n")
		fs.PrintDefaults()
	}
	var certs, keys, chains ltFiles
	server := fs.String("server", "127.0.0.1:1812", "RADIUS server `host:port` (all traffic goes there only)")
	secret := fs.String("secret", "", "RADIUS shared secret (prefer --secret-file)")
	secretFile := fs.String("secret-file", "", "`file` holding the shared secret")
	fs.Var(&certs, "cert", "client certificate PEM `file` (repeatable; may hold the chain)")
	fs.Var(&keys, "key", "private key PEM `file` of the matching --cert (repeatable)")
	fs.Var(&chains, "chain", "intermediates PEM `file` of the matching --cert (repeatable, optional)")
	personas := fs.String("personas", "", "`dir` of <name>.crt/<name>.key[/<name>-chain.crt] personas, used round-robin")
	ca := fs.String("ca", "", "CA PEM `file` that verifies the EAP-TLS server certificate")
	serverName := fs.String("server-name", "", "expected server certificate `name` (default: verify the chain only)")
	insecure := fs.Bool("insecure-skip-verify", false, "do not verify the server certificate (lab only)")
	tlsVersion := fs.String("tls", "any", "TLS `version`: 1.2, 1.3 or any")
	concurrency := fs.Int("concurrency", 0, "authentications in flight (closed loop; default 8), or the most outstanding with --rate (default 64)")
	rate := fs.Float64("rate", 0, "start authentications open-loop at this many `per second`")
	duration := fs.Duration("duration", 0, "stop starting authentications after this long")
	count := fs.Int("count", 0, "stop after this many authentications")
	curves := fs.String("curves", "", "key exchanges to offer, comma-separated: x25519, p256, p384, p521, x25519mlkem768 (default: Go's, hybrid ML-KEM first)")
	fragment := fs.Int("fragment-size", 0, "TLS `bytes` per EAP-TLS fragment (default 1020)")
	timeout := fs.Duration("timeout", loadtest.DefaultTimeout, "wait for each reply before retransmitting")
	retries := fs.Int("retries", loadtest.DefaultRetries, "retransmissions of a request before a timeout (0: none)")
	called := fs.String("called-station-id", "", "Called-Station-Id to send (\"AA-BB-CC-DD-EE-FF:SSID\")")
	nasID := fs.String("nas-identifier", "nacd-loadtest", "NAS-Identifier to send")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	serverMetrics := fs.String("server-metrics", "", "`URL` of the server's Prometheus metrics (nacd: http://127.0.0.1:9812/metrics): report its own time per Access-Request and CPU per authentication")
	progress := fs.Bool("progress", false, "print a progress line every second on stderr even when it is not a terminal")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nacd loadtest: unexpected argument %q\n", strings.Join(fs.Args(), " "))
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nacd loadtest: "+format+"\n", a...)
		return exitUsage
	}
	if *count <= 0 && *duration <= 0 {
		return usageErr("--count or --duration is required (a load test must stop by itself)")
	}
	if (*secret == "") == (*secretFile == "") {
		return usageErr("exactly one of --secret and --secret-file is required")
	}
	if len(certs) != len(keys) || (len(chains) > 0 && len(chains) != len(certs)) {
		return usageErr("give one --key (and, if any, one --chain) per --cert")
	}
	if len(certs) == 0 && *personas == "" {
		return usageErr("client certificates are required: --cert/--key or --personas")
	}
	if (*ca == "") == !*insecure {
		return usageErr("exactly one of --ca and --insecure-skip-verify is required")
	}
	cfg := loadtest.Config{
		Server: *server, ServerName: *serverName, InsecureSkipVerify: *insecure,
		Concurrency: *concurrency, Rate: *rate, Count: *count, Duration: *duration,
		FragmentSize: *fragment, Timeout: *timeout, Retries: *retries,
		CalledStationID: *called, NASIdentifier: *nasID, ServerMetrics: *serverMetrics,
	}
	if *retries == 0 {
		cfg.Retries = -1
	}
	if cfg.Concurrency == 0 && cfg.Rate == 0 {
		cfg.Concurrency = 8
	}
	switch *tlsVersion {
	case "1.2":
		cfg.TLSVersion = tls.VersionTLS12
	case "1.3":
		cfg.TLSVersion = tls.VersionTLS13
	case "any", "":
	default:
		return usageErr("--tls %q: want 1.2, 1.3 or any", *tlsVersion)
	}

	for _, c := range strings.Split(*curves, ",") {
		id, ok := ltCurves[strings.ToLower(strings.TrimSpace(c))]
		switch {
		case strings.TrimSpace(c) == "":
		case !ok:
			return usageErr("--curves: unknown key exchange %q", c)
		default:
			cfg.CurvePreferences = append(cfg.CurvePreferences, id)
		}
	}

	fail := func(err error) int {
		fmt.Fprintf(stderr, "nacd loadtest: %v\n", err)
		return exitFailure
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fail(err)
		}
		cfg.Secret = []byte(strings.TrimSpace(string(b)))
	} else {
		cfg.Secret = []byte(*secret)
	}
	for i := range certs {
		chain := ""
		if len(chains) > 0 {
			chain = chains[i]
		}
		id, err := loadtest.LoadIdentity(certs[i], keys[i], chain)
		if err != nil {
			return fail(err)
		}
		cfg.Identities = append(cfg.Identities, id)
	}
	if *personas != "" {
		ids, err := loadtest.LoadIdentityDir(*personas)
		if err != nil {
			return fail(err)
		}
		cfg.Identities = append(cfg.Identities, ids...)
	}
	if *ca != "" {
		pool, err := loadtest.LoadCertPool(*ca)
		if err != nil {
			return fail(err)
		}
		cfg.RootCAs = pool
	}
	if !isLoopback(*server) {
		fmt.Fprintf(stderr, "nacd loadtest: warning: %s is not a loopback address; this is a lab tool, never aim it at a production RADIUS server\n", *server)
	}
	if tty := isTerminal(stderr); tty || *progress {
		cfg.Progress, cfg.ProgressInPlace = stderr, tty
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := loadtest.Run(ctx, cfg)
	if sum == nil {
		return fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(sum); werr != nil {
			return fail(werr)
		}
	} else if werr := sum.WriteText(stdout); werr != nil {
		return fail(werr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nacd loadtest: interrupted: %v\n", err)
		return exitFailure
	}
	if !sum.OK() {
		return exitFailure
	}
	return exitOK
}

// ltCurves names the key exchanges --curves accepts.
var ltCurves = map[string]tls.CurveID{
	"x25519": tls.X25519, "p256": tls.CurveP256, "p384": tls.CurveP384, "p521": tls.CurveP521,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// isLoopback reports whether host:port names a loopback address.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
