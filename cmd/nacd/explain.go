package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// explanation is what `nacd policy explain --json` prints.
type explanation struct {
	Certificate string      `json:"certificate"`
	Site        string      `json:"site"`
	SSID        string      `json:"ssid,omitempty"`
	Time        time.Time   `json:"time"`
	Identity    explainID   `json:"identity"`
	Status      string      `json:"status"`
	Anchor      string      `json:"anchor"`
	AnchorIL3   bool        `json:"anchor_il3"`
	Revocation  explainRev  `json:"revocation"`
	Decision    explainDecn `json:"decision"`
}

type explainID struct {
	Subject      string    `json:"subject"`
	CommonName   string    `json:"common_name"`
	Email        string    `json:"email,omitempty"`
	DeviceUUID   string    `json:"device_uuid,omitempty"`
	Serial       string    `json:"serial"`
	Issuer       string    `json:"issuer"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	Ownership    string    `json:"ownership"`
	Role         string    `json:"role"`
	ClearanceIL3 bool      `json:"clearance_il3"`
	PolicyOIDs   []string  `json:"policy_oids"`
}

type explainRev struct {
	Checked  bool    `json:"checked"`
	Revoked  bool    `json:"revoked"`
	Stale    bool    `json:"stale"`
	Source   string  `json:"source,omitempty"`
	AgeSecs  float64 `json:"age_s"`
	MaxAgeIL string  `json:"max_age_il3"`
}

type explainDecn struct {
	Accepted       bool   `json:"accepted"`
	Segment        string `json:"segment"`
	VLAN           int    `json:"vlan"`
	Rule           string `json:"rule"`
	Reason         string `json:"reason"`
	SessionTimeout int64  `json:"session_timeout_s"`
}

// cmdPolicyExplain runs `nacd policy explain`: it verifies a certificate
// against the configured trust anchors and prints the identity, the
// verification result and the decision, without a running server.
func cmdPolicyExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy explain", stderr)
	certFile := fs.String("cert", "", "device certificate (PEM; may hold the chain after the leaf) (required)")
	chainFile := fs.String("chain", "", "intermediate certificates the device sends (PEM)")
	site := fs.String("site", "", "site of the NAS, as in the configuration (required)")
	ssid := fs.String("ssid", "", "SSID (as in Called-Station-Id)")
	cfgPath := fs.String("config", "", "configuration file (default "+DefaultConfigPath+" if it exists, else the built-in configuration)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *certFile == "" || *site == "" {
		fmt.Fprintln(stderr, "nacd policy explain: --cert and --site are required")
		fs.Usage()
		return exitUsage
	}
	ex, err := explain(*certFile, *chainFile, *site, *ssid, *cfgPath, *dataDir, time.Now())
	if err != nil {
		printErr(stderr, "policy explain", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ex); err != nil {
			printErr(stderr, "policy explain", err)
			return exitFailure
		}
		return exitOK
	}
	printExplanation(stdout, ex)
	return exitOK
}

func explain(certFile, chainFile, site, ssid, cfgPath, dataDir string, now time.Time) (*explanation, error) {
	l, err := loadConfig(cfgPath, dataDir, readOnly)
	if err != nil {
		return nil, err
	}
	cfg := l.cfg
	if _, ok := cfg.Policy.Sites[site]; !ok {
		names := make([]string, len(cfg.Sites))
		for i, s := range cfg.Sites {
			names[i] = strconv.Quote(s.Name)
		}
		return nil, fmt.Errorf("unknown site %q (sites in %s: %s)", site, cfg.Source, strings.Join(names, ", "))
	}
	if cfg.BootstrapAnchors() {
		b, err := bootstrapExisting(cfg.DataDir, now)
		if err != nil {
			return nil, err
		}
		cfg.TrustAnchors = []pki.AnchorConfig{config.BootstrapAnchor(b)}
	}
	store, err := pki.NewTrustStore(cfg.TrustAnchors)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	chain, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}
	if chainFile != "" {
		more, err := readCerts(chainFile)
		if err != nil {
			return nil, err
		}
		chain = append(chain, more...)
	}
	id := store.VerifyClient(chain, now)
	d := cfg.Policy.Decide(id, policy.Request{Site: site, SSID: ssid, Now: now})
	return &explanation{
		Certificate: certFile,
		Site:        site,
		SSID:        ssid,
		Time:        now.UTC(),
		Identity: explainID{
			Subject: id.Subject, CommonName: id.CommonName, Email: id.Email, DeviceUUID: id.DeviceUUID,
			Serial: id.Serial, Issuer: id.Issuer, NotBefore: id.NotBefore.UTC(), NotAfter: id.NotAfter.UTC(),
			Ownership: string(id.Ownership), Role: string(id.Role), ClearanceIL3: id.ClearanceIL3,
			PolicyOIDs: append([]string{}, id.PolicyOIDs...),
		},
		Status:    string(id.Status),
		Anchor:    id.Anchor,
		AnchorIL3: id.AnchorIL3,
		Revocation: explainRev{
			Checked: id.Revocation.Checked, Revoked: id.Revocation.Revoked, Stale: id.Revocation.Stale,
			Source: id.Revocation.Source, AgeSecs: id.Revocation.Age.Seconds(),
			MaxAgeIL: shortDuration(cfg.Policy.MaxRevocationAge),
		},
		Decision: explainDecn{
			Accepted: d.Accepted(), Segment: string(d.Segment), VLAN: d.VLAN, Rule: d.Rule,
			Reason: string(d.Reason), SessionTimeout: int64(d.SessionTimeout / time.Second),
		},
	}, nil
}

// readCerts reads every certificate of a PEM file (or one DER
// certificate).
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, errors.New("no certificate (want PEM \"CERTIFICATE\" blocks or DER)"))
		}
		certs = append(certs, c)
	}
	return certs, nil
}

func printExplanation(w io.Writer, ex *explanation) {
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "  %-15s %s\n", k, fmt.Sprintf(format, args...)) }
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	id := ex.Identity
	fmt.Fprintf(w, "certificate %s\n", ex.Certificate)
	row("subject", "%s", id.Subject)
	row("e-mail", "%s", orNone(id.Email))
	row("device uuid", "%s", orNone(id.DeviceUUID))
	row("serial", "%s", id.Serial)
	row("issuer", "%s", id.Issuer)
	row("valid", "%s to %s", id.NotBefore.Format(time.RFC3339), id.NotAfter.Format(time.RFC3339))
	row("ownership", "%s", id.Ownership)
	row("role", "%s", id.Role)
	row("il3 clearance", "%v", id.ClearanceIL3)
	row("policy OIDs", "%s", orNone(strings.Join(id.PolicyOIDs, " ")))
	fmt.Fprintln(w, "verification")
	row("status", "%s", ex.Status)
	if ex.Anchor != "" {
		row("trust anchor", "%s (il3: %v)", ex.Anchor, ex.AnchorIL3)
	} else {
		row("trust anchor", "(none verified the chain)")
	}
	rev := ex.Revocation
	switch {
	case rev.Revoked:
		row("revocation", "REVOKED (source %s)", orNone(rev.Source))
	case rev.Checked:
		row("revocation", "checked, not revoked (source %s, age %s, stale %v; il3 needs at most %s)", orNone(rev.Source), (time.Duration(rev.AgeSecs) * time.Second).Round(time.Second), rev.Stale, rev.MaxAgeIL)
	default:
		row("revocation", "not checked (stale %v)", rev.Stale)
	}
	ssid := ex.SSID
	if ssid == "" {
		ssid = "any"
	}
	fmt.Fprintf(w, "decision at site %q, SSID %s\n", ex.Site, ssid)
	d := ex.Decision
	if d.Accepted {
		row("result", "ACCEPT")
		row("segment", "%s", d.Segment)
		row("vlan", "%d", d.VLAN)
	} else {
		row("result", "REJECT")
	}
	row("rule", "%s", d.Rule)
	row("reason", "%s", d.Reason)
	if d.SessionTimeout > 0 {
		row("session timeout", "%s", shortDuration(time.Duration(d.SessionTimeout)*time.Second))
	}
}

// shortDuration prints d without zero minutes and seconds: "12h", "1h30m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
