package config

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eaptls"
)

// build validates raw into a Config, adding every problem to ps. The
// returned Config is only meaningful when ps stays empty.
func build(raw *rawConfig, ps *problems) *Config {
	cfg := &Config{DataDir: orDefault(raw.DataDir, DefaultDataDir)}
	if strings.TrimSpace(raw.DataDir) == "" && raw.DataDir != "" {
		ps.add("data_dir", "must not be blank")
	}

	cfg.Listen = Listen{
		RADIUSAuth: listenAddr(ps, "listen.radius_auth", raw.Listen.RADIUSAuth, DefaultRADIUSAuth),
		RADIUSAcct: listenAddr(ps, "listen.radius_acct", raw.Listen.RADIUSAcct, DefaultRADIUSAcct),
		Metrics:    listenAddr(ps, "listen.metrics", raw.Listen.Metrics, DefaultMetrics),
	}

	sitePaths := buildSites(raw, cfg, ps)
	buildClients(raw, cfg, ps)
	buildTLS(raw, cfg, ps)
	anchorNames := buildAnchors(raw, cfg, ps)
	buildPolicy(raw, cfg, ps, sitePaths, anchorNames)
	buildRadSec(raw, cfg, ps)
	buildAccounting(raw, cfg, ps)
	buildPKI(raw, cfg, ps)

	cfg.Limits = Limits{
		MaxConversations:    intField(ps, "limits.max_conversations", raw.Limits.MaxConversations, DefaultMaxConversations, 1, 1<<24),
		ConversationTimeout: duration(ps, "limits.conversation_timeout", raw.Limits.ConversationTimeout, DefaultConversationTimeout, time.Second),
		DuplicateWindow:     duration(ps, "limits.duplicate_window", raw.Limits.DuplicateWindow, DefaultDuplicateWindow, time.Second),
	}

	cfg.Log.Level = zapcore.InfoLevel
	if raw.Log.Level != "" {
		lvl, err := zapcore.ParseLevel(raw.Log.Level)
		if err != nil || lvl < zapcore.DebugLevel || lvl > zapcore.ErrorLevel {
			ps.add("log.level", "%q is not a log level (want debug, info, warn or error)", raw.Log.Level)
		}
		cfg.Log.Level = lvl
	}
	cfg.Log.AccessLog = orDefault(raw.Log.AccessLog, DefaultAccessLog)
	if strings.TrimSpace(cfg.Log.AccessLog) == "" {
		ps.add("log.access_log", "must not be blank (a file path, \"stdout\" or \"stderr\")")
	}
	validateAuditLog(ps, &raw.Log, &cfg.Log)
	return cfg
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func listenAddr(ps *problems, path, s, def string) string {
	if s == "" {
		return def
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		ps.add(path, "%q is not host:port (e.g. \"127.0.0.1:1812\")", s)
		return s
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		ps.add(path, "%q: port %q is not a number 0..65535", s, port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			ps.add(path, "%q: host %q is not an IP address (or empty for every address)", s, host)
		}
	}
	return s
}

func duration(ps *problems, path, s string, def, min time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ps.add(path, "%q is not a duration (write e.g. \"30s\", \"5m\", \"12h\")", s)
		return def
	}
	if d < min {
		if min == 0 {
			ps.add(path, "must not be negative, got %s", s)
		} else {
			ps.add(path, "must be at least %s, got %s", min, s)
		}
	}
	return d
}

func intField(ps *problems, path string, v *int, def, min, max int) int {
	if v == nil {
		return def
	}
	if *v < min || *v > max {
		ps.add(path, "%d is out of range %d..%d", *v, min, max)
	}
	return *v
}

// buildSites fills cfg.Sites and returns the path of each site by name.
func buildSites(raw *rawConfig, cfg *Config, ps *problems) map[string]string {
	paths := map[string]string{}
	if len(raw.Sites) == 0 {
		ps.add("sites", "at least one site is required")
	}
	for i, rs := range raw.Sites {
		path := fmt.Sprintf("sites[%d]", i)
		name := strings.TrimSpace(rs.Name)
		switch {
		case name == "":
			ps.add(path+".name", "must not be empty")
			continue
		case name != rs.Name:
			ps.add(path+".name", "%q has leading or trailing spaces", rs.Name)
			continue
		}
		if prev, dup := paths[name]; dup {
			ps.add(path+".name", "duplicate site %q (also %s)", name, prev)
			continue
		}
		paths[name] = path
		site := policy.Site{Name: name, VLANs: map[policy.Segment]int{}}
		for _, v := range []struct {
			seg  policy.Segment
			vlan *int
		}{
			{policy.SegmentIL3, rs.VLANs.IL3},
			{policy.SegmentGeneral, rs.VLANs.General},
			{policy.SegmentGuest, rs.VLANs.Guest},
			{policy.SegmentOnboarding, rs.VLANs.Onboarding},
		} {
			if v.vlan != nil {
				site.VLANs[v.seg] = *v.vlan
			}
		}
		if len(site.VLANs) == 0 {
			ps.add(path+".vlans", "site %q offers no segment: give at least one of il3, general, guest, onboarding", name)
		}
		cfg.Sites = append(cfg.Sites, site)
	}
	return paths
}

func buildClients(raw *rawConfig, cfg *Config, ps *problems) {
	if len(raw.Clients) == 0 {
		ps.add("clients", "at least one client (NAS) is required")
	}
	names := map[string]int{}
	type owned struct {
		prefix netip.Prefix
		path   string
	}
	var seen []owned
	for i, rc := range raw.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		c := Client{Name: strings.TrimSpace(rc.Name), Site: rc.Site, RequireMessageAuthenticator: true}
		if rc.RequireMessageAuthenticator != nil {
			c.RequireMessageAuthenticator = *rc.RequireMessageAuthenticator
		}
		if c.Name == "" {
			ps.add(path+".name", "must not be empty")
		} else if prev, dup := names[c.Name]; dup {
			ps.add(path+".name", "duplicate client %q (also clients[%d])", c.Name, prev)
		} else {
			names[c.Name] = i
		}

		if len(rc.Networks) == 0 {
			ps.add(path+".networks", "at least one IP or CIDR is required")
		}
		for j, n := range rc.Networks {
			npath := fmt.Sprintf("%s.networks[%d]", path, j)
			p, ok := parseNetwork(n)
			if !ok {
				ps.add(npath, "%q is not an IP or CIDR", n)
				continue
			}
			for _, o := range seen {
				if o.prefix.Overlaps(p) {
					ps.add(npath, "%s overlaps %s (%s): a source address must belong to one client", p, o.path, o.prefix)
				}
			}
			seen = append(seen, owned{p, npath})
			c.Networks = append(c.Networks, p)
		}

		switch {
		case rc.Secret != "" && rc.SecretFile != "":
			ps.add(path+".secret", "give secret or secret_file, not both")
		case rc.Secret == "" && rc.SecretFile == "":
			ps.add(path+".secret_file", "a shared secret is required (secret_file, or secret)")
		case rc.SecretFile != "":
			b, err := os.ReadFile(rc.SecretFile)
			if err != nil {
				ps.add(path+".secret_file", "cannot read: %v", unwrapPathError(err))
				break
			}
			c.Secret = Secret(strings.TrimSpace(string(b)))
			c.SecretSource = "file " + rc.SecretFile
			if len(c.Secret) == 0 {
				ps.add(path+".secret_file", "%s is empty", rc.SecretFile)
			}
		default:
			c.Secret = Secret(rc.Secret)
			c.SecretSource = "inline"
		}
		if n := len(c.Secret); n > 0 && n < MinSecretLength && !rc.AllowWeakSecret {
			field := path + ".secret"
			if rc.SecretFile != "" {
				field = path + ".secret_file"
			}
			// Never print the secret itself, only its length.
			ps.add(field, "the shared secret has %d characters, fewer than %d: use a longer random secret (or allow_weak_secret: true, for a lab only)", n, MinSecretLength)
		}

		if strings.TrimSpace(c.Site) == "" {
			ps.add(path+".site", "must not be empty (one of the sites)")
		} else if !hasSite(raw.Sites, c.Site) {
			ps.add(path+".site", "unknown site %q (sites: %s)", c.Site, siteList(raw.Sites))
		}
		cfg.Clients = append(cfg.Clients, c)
	}
}

func parseNetwork(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func hasSite(sites []rawSite, name string) bool {
	for _, s := range sites {
		if s.Name == name {
			return true
		}
	}
	return false
}

func siteList(sites []rawSite) string {
	names := make([]string, 0, len(sites))
	for _, s := range sites {
		names = append(names, strconv.Quote(s.Name))
	}
	if len(names) == 0 {
		return "none configured"
	}
	return strings.Join(names, ", ")
}

func buildTLS(raw *rawConfig, cfg *Config, ps *problems) {
	rt := raw.TLS
	t := TLS{CertFile: rt.Certificate, KeyFile: rt.Key}
	switch {
	case rt.Certificate == "" && rt.Key == "":
	case rt.Certificate == "":
		ps.add("tls.certificate", "key is set but certificate is not: set both, or neither for the bootstrap server certificate")
	case rt.Key == "":
		ps.add("tls.key", "certificate is set but key is not: set both, or neither for the bootstrap server certificate")
	default:
		cert, err := tls.LoadX509KeyPair(rt.Certificate, rt.Key)
		if err != nil {
			ps.add("tls.certificate", "cannot load the certificate and key: %v", unwrapPathError(err))
		}
		t.Certificate = cert
	}
	t.MinVersion = tlsVersion(ps, "tls.min_version", rt.MinVersion, tls.VersionTLS12)
	t.MaxVersion = tlsVersion(ps, "tls.max_version", rt.MaxVersion, tls.VersionTLS13)
	if t.MinVersion != 0 && t.MaxVersion != 0 && t.MaxVersion < t.MinVersion {
		ps.add("tls.max_version", "%q is below min_version %q", rt.MaxVersion, orDefault(rt.MinVersion, "1.2"))
	}
	t.FragmentSize = intField(ps, "tls.fragment_size", rt.FragmentSize, DefaultFragmentSize, 64, 4000)
	t.MaxMessageSize = intField(ps, "tls.max_message_size", rt.MaxMessageSize, DefaultMaxMessageSize, 4096, 1<<24)
	if _, err := eaptls.ParseCurvePreferences(rt.CurvePreferences); err != nil {
		ps.add("tls.curve_preferences", "%s", strings.TrimPrefix(err.Error(), "eaptls: "))
	}
	t.CurvePreferences = rt.CurvePreferences
	cfg.TLS = t
}

func tlsVersion(ps *problems, path, s string, def uint16) uint16 {
	switch strings.TrimSpace(s) {
	case "":
		return def
	case "1.2":
		return tls.VersionTLS12
	case "1.3":
		return tls.VersionTLS13
	}
	ps.add(path, "%q is not a TLS version nacd accepts (want \"1.2\" or \"1.3\")", s)
	return 0
}

// buildAnchors fills cfg.TrustAnchors and returns the names a rule may use.
func buildAnchors(raw *rawConfig, cfg *Config, ps *problems) map[string]bool {
	names := map[string]bool{}
	if len(raw.TrustAnchors) == 0 {
		names[BootstrapAnchorName] = true
		return names
	}
	for i, ra := range raw.TrustAnchors {
		path := fmt.Sprintf("trust_anchors[%d]", i)
		a := pki.AnchorConfig{
			Name:            strings.TrimSpace(ra.Name),
			IL3:             ra.IL3,
			CAFiles:         ra.CAFiles,
			CRLs:            ra.CRLs,
			CRLRefresh:      duration(ps, path+".crl_refresh", ra.CRLRefresh, DefaultCRLRefresh, time.Second),
			CRLMaxAge:       duration(ps, path+".crl_max_age", ra.CRLMaxAge, 0, 0),
			StaleFailClosed: ra.StaleFailClosed,
			RequireCRL:      ra.RequireCRL,
			OIDs:            policy.DefaultOIDs(),
		}
		switch {
		case a.Name == "":
			ps.add(path+".name", "must not be empty")
		case names[a.Name]:
			ps.add(path+".name", "duplicate trust anchor %q", a.Name)
		default:
			names[a.Name] = true
		}
		if len(ra.CAFiles) == 0 {
			ps.add(path+".ca_files", "at least one CA file (PEM) is required")
		}
		for j, f := range ra.CAFiles {
			if _, err := os.Stat(f); err != nil {
				ps.add(fmt.Sprintf("%s.ca_files[%d]", path, j), "cannot read: %v", unwrapPathError(err))
			}
		}
		checkCRLSources(ps, path+".crls", ra.CRLs)
		if ra.OIDs != nil {
			a.OIDs = policy.OIDs{
				CouncilManaged: ra.OIDs.CouncilManaged,
				Personal:       ra.OIDs.Personal,
				Staff:          ra.OIDs.Staff,
				Member:         ra.OIDs.Member,
				Contractor:     ra.OIDs.Contractor,
				Visitor:        ra.OIDs.Visitor,
				ClearanceIL3:   ra.OIDs.ClearanceIL3,
			}
			for _, err := range joined(a.OIDs.Validate()) {
				// policy says "oids.staff[0]: msg".
				field, msg, ok := strings.Cut(err.Error(), ": ")
				if !ok || !strings.HasPrefix(field, "oids.") {
					ps.add(path+".oids", "%v", err)
					continue
				}
				ps.add(path+"."+field, "%s", msg)
			}
		}
		cfg.TrustAnchors = append(cfg.TrustAnchors, a)
	}
	return names
}

// joined splits an errors.Join result into its errors.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return []error{err}
}

// matchFields are the rule fields that live under "match" in the file.
var matchFields = map[string]bool{
	"ownership": true, "roles": true, "clearance_il3": true, "anchors": true,
	"policy_oids": true, "email_domains": true, "sites": true, "ssids": true,
}

func buildPolicy(raw *rawConfig, cfg *Config, ps *problems, sitePaths map[string]string, anchors map[string]bool) {
	p := &policy.Policy{
		Sites:            make(map[string]policy.Site, len(cfg.Sites)),
		MaxRevocationAge: duration(ps, "policy.max_revocation_age", raw.Policy.MaxRevocationAge, DefaultMaxRevocationAge, 0),
	}
	for _, s := range cfg.Sites {
		p.Sites[s.Name] = s
	}
	if len(raw.Policy.Rules) == 0 {
		ps.add("policy.rules", "at least one rule is required (with none, every device is rejected)")
	}
	norm := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	for i, rr := range raw.Policy.Rules {
		path := fmt.Sprintf("policy.rules[%d]", i)
		r := policy.Rule{
			Name:           rr.Name,
			ClearanceIL3:   rr.Match.ClearanceIL3,
			Anchors:        rr.Match.Anchors,
			PolicyOIDs:     rr.Match.PolicyOIDs,
			EmailDomains:   rr.Match.EmailDomains,
			Sites:          rr.Match.Sites,
			SSIDs:          rr.Match.SSIDs,
			Segment:        policy.Segment(norm(rr.Segment)),
			Fallback:       policy.Segment(norm(rr.Fallback)),
			RejectReason:   policy.Reason(norm(rr.RejectReason)),
			SessionTimeout: duration(ps, path+".session_timeout", rr.SessionTimeout, 0, 0),
		}
		for _, o := range rr.Match.Ownership {
			r.Ownership = append(r.Ownership, policy.Ownership(norm(o)))
		}
		for _, ro := range rr.Match.Roles {
			r.Roles = append(r.Roles, policy.Role(norm(ro)))
		}
		if rr.Segment == "" {
			ps.add(path+".segment", "is required (il3, general, guest, onboarding or reject)")
		}
		for j, a := range rr.Match.Anchors {
			if a != "" && !anchors[a] {
				ps.add(fmt.Sprintf("%s.match.anchors[%d]", path, j), "unknown trust anchor %q (anchors: %s)", a, anchorList(anchors))
			}
		}
		p.Rules = append(p.Rules, r)
	}
	for _, err := range joined(p.Validate()) {
		var fe *policy.FieldError
		if !errors.As(err, &fe) {
			ps.add("policy", "%v", err)
			continue
		}
		path := policyPath(fe.Field, sitePaths)
		if path == "" {
			continue // reported by the site checks above
		}
		if strings.HasSuffix(path, ".segment") && fe.RuleIndex >= 0 && fe.RuleIndex < len(raw.Policy.Rules) && raw.Policy.Rules[fe.RuleIndex].Segment == "" {
			continue // "is required" already said
		}
		msg := fe.Msg
		if fe.RuleIndex >= 0 {
			msg = fmt.Sprintf("rule %q: %s", fe.Rule, fe.Msg)
		}
		ps.add(path, "%s", msg)
	}
	cfg.Policy = p
}

func anchorList(m map[string]bool) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, strconv.Quote(n))
	}
	if len(names) == 0 {
		return "none"
	}
	sortStrings(names)
	return strings.Join(names, ", ")
}

var ruleField = regexp.MustCompile(`^rules\[(\d+)\]\.([a-z_0-9]+)(.*)$`)

// policyPath maps a policy.FieldError field to the path in the file:
// "rules[2].ownership[0]" -> "policy.rules[2].match.ownership[0]",
// "sites.Wallfields.vlans.il3" -> "sites[0].vlans.il3". It returns "" for a
// field the config checks already cover.
func policyPath(field string, sitePaths map[string]string) string {
	if m := ruleField.FindStringSubmatch(field); m != nil {
		if matchFields[m[2]] {
			return fmt.Sprintf("policy.rules[%s].match.%s%s", m[1], m[2], m[3])
		}
		return fmt.Sprintf("policy.rules[%s].%s%s", m[1], m[2], m[3])
	}
	if field == "sites" || field == "sites.<empty>" {
		return ""
	}
	if rest, ok := strings.CutPrefix(field, "sites."); ok {
		// Site names may contain dots and spaces: find the longest known
		// name that prefixes rest.
		best := ""
		for name := range sitePaths {
			if (rest == name || strings.HasPrefix(rest, name+".")) && len(name) > len(best) {
				best = name
			}
		}
		if best == "" {
			return "sites"
		}
		return sitePaths[best] + strings.TrimPrefix(rest, best)
	}
	return "policy." + field
}

func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func sortStrings(s []string) { sort.Strings(s) }

// checkCRLSources checks CRL sources (trust_anchors[].crls, radsec.crls):
// each an http(s) URL or a readable file.
func checkCRLSources(ps *problems, path string, srcs []string) {
	for j, src := range srcs {
		cpath := fmt.Sprintf("%s[%d]", path, j)
		if strings.Contains(src, "://") {
			u, err := url.Parse(src)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				ps.add(cpath, "%q is not an http(s) URL or a file path", src)
			}
			continue
		}
		if _, err := os.Stat(src); err != nil {
			ps.add(cpath, "cannot read: %v", unwrapPathError(err))
		}
	}
}
