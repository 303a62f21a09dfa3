package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// cmdConfigCheck runs `nacd config check`: exit 0 and a summary on stdout,
// or exit 1 and every problem on stderr.
func cmdConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("config check", stderr)
	cfgPath := fs.String("config", "", "configuration file (default "+DefaultConfigPath+" if it exists, else the built-in configuration)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	l, err := loadConfig(*cfgPath, *dataDir, readOnly)
	if err != nil {
		printErr(stderr, "config check", err)
		return exitFailure
	}
	cfg := l.cfg
	// The trust anchors' CA files and CRLs must parse (the loader only
	// checked they exist); the bootstrap CA is created by serve.
	if !cfg.BootstrapAnchors() {
		if _, err := pki.NewTrustStore(cfg.TrustAnchors); err != nil {
			fmt.Fprintf(stderr, "nacd config check: %s: 1 problem(s):\nconfig: trust_anchors: %v\n", cfg.Source, err)
			return exitFailure
		}
	}
	printSummary(stdout, l)
	return exitOK
}

func printSummary(w io.Writer, l *loaded) {
	cfg := l.cfg
	fmt.Fprintf(w, "ok: %s\n", cfg.Source)
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "  %-14s %s\n", k, fmt.Sprintf(format, args...)) }
	row("data_dir", "%s", cfg.DataDir)
	row("listen", "radius_auth %s, radius_acct %s, metrics %s, pki %s", cfg.Listen.RADIUSAuth, cfg.Listen.RADIUSAcct, cfg.Listen.Metrics, orNone(cfg.Listen.PKI))
	row("sessions", "store %s, idle timeout %s", cfg.Accounting.StoreName(), cfg.Accounting.SessionIdleTimeout)
	for i, c := range cfg.Clients {
		nets := make([]string, len(c.Networks))
		for j, n := range c.Networks {
			nets[j] = n.String()
		}
		k := ""
		if i == 0 {
			k = fmt.Sprintf("clients (%d)", len(cfg.Clients))
		}
		row(k, "%s: %s, site %q, secret %s, message-authenticator required: %v", c.Name, strings.Join(nets, " "), c.Site, c.SecretSource, c.RequireMessageAuthenticator)
	}
	for i, s := range cfg.Sites {
		k := ""
		if i == 0 {
			k = fmt.Sprintf("sites (%d)", len(cfg.Sites))
		}
		row(k, "%s: %s", s.Name, vlanList(s))
	}
	tlsSrc := "bootstrap server certificate in " + filepath.Join(cfg.DataDir, "pki")
	if !cfg.BootstrapTLS() {
		tlsSrc = cfg.TLS.CertFile
	}
	row("tls", "%s; TLS %s-%s; fragment_size %d; max_message_size %d", tlsSrc, tlsName(cfg.TLS.MinVersion), tlsName(cfg.TLS.MaxVersion), cfg.TLS.FragmentSize, cfg.TLS.MaxMessageSize)
	if cfg.BootstrapAnchors() {
		row("trust anchors", "%q: the bootstrap CA in %s (il3, CRL required; created by nacd serve)", config.BootstrapAnchorName, filepath.Join(cfg.DataDir, "pki"))
	}
	for i, a := range cfg.TrustAnchors {
		k := ""
		if i == 0 {
			k = fmt.Sprintf("trust anchors (%d)", len(cfg.TrustAnchors))
		}
		row(k, "%s: il3 %v, %d CA file(s), %d CRL source(s), refresh %s", a.Name, a.IL3, len(a.CAFiles), len(a.CRLs), a.CRLRefresh)
	}
	row("policy", "%d rule(s), max_revocation_age %s", len(cfg.Policy.Rules), shortDuration(cfg.Policy.MaxRevocationAge))
	for i, r := range cfg.Policy.Rules {
		action := string(r.Segment)
		if r.Segment == policy.SegmentIL3 {
			fb := r.Fallback
			if fb == "" {
				fb = policy.SegmentReject
			}
			action += " (fallback " + string(fb) + ")"
		}
		row("", "%d. %s -> %s", i+1, r.Name, action)
	}
	row("limits", "max_conversations %d, conversation_timeout %s, duplicate_window %s", cfg.Limits.MaxConversations, cfg.Limits.ConversationTimeout, cfg.Limits.DuplicateWindow)
	row("log", "level %s, access_log %s", cfg.Log.Level, cfg.Log.AccessLog)
}

func vlanList(s policy.Site) string {
	var parts []string
	for _, seg := range policy.Segments() {
		if v, ok := s.VLANs[seg]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", seg, v))
		}
	}
	return strings.Join(parts, ", ")
}

func tlsName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// orNone is s, or "none" when s is empty (a disabled listener).
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
