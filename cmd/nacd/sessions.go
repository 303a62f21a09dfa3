package main

// nacd sessions list|disconnect: the service desk's view of live sessions.
// The CLI asks the running daemon (the embedded session store is locked
// while nacd serve runs): the admin endpoints of sessions_serve.go on the
// metrics listener, with the admin token from the data dir.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/radius"
)

const sessionsUsage = `usage:
  nacd sessions list [--holder E | --device UUID | --serial S | --nas N] [--json]
  nacd sessions disconnect (--session ID [--nas N] | --device UUID | --holder E | --serial S) [--json]

Both ask the running nacd serve (its metrics/admin listener, loopback only)
with the admin token of the data dir. Common flags:
  --config FILE       configuration (default ` + DefaultConfigPath + ` or the built-in one)
  --data-dir DIR      data directory (overrides data_dir)
  --admin HOST:PORT   the daemon's admin listener (default listen.metrics)
  --token-file FILE   admin token (default data_dir/` + pki.AdminTokenFileName + `)

disconnect sends RFC 5176 Disconnect-Request to the NAS of every matching
session and exits 1 unless every NAS acknowledged.
`

// sessionsTimeout bounds one CLI call (disconnect waits for NAS retries).
const sessionsTimeout = 2 * time.Minute

// runSessions runs `nacd sessions ...` (args without "sessions").
func runSessions(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "disconnect") {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, sessionsUsage)
			return exitOK
		}
		fmt.Fprint(stderr, sessionsUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlagSet("sessions "+sub, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sessionsUsage) }
	cfgPath := fs.String("config", "", "configuration file")
	dataDir := fs.String("data-dir", "", "data directory")
	admin := fs.String("admin", "", "admin listener host:port (default listen.metrics)")
	tokenFile := fs.String("token-file", "", "admin token file (default data_dir/"+pki.AdminTokenFileName+")")
	asJSON := fs.Bool("json", false, "print JSON")
	holder := fs.String("holder", "", "holder e-mail")
	device := fs.String("device", "", "device UUID")
	serial := fs.String("serial", "", "certificate serial (hex)")
	nas := fs.String("nas", "", "NAS: client name, address or NAS-Identifier")
	session := fs.String("session", "", "Acct-Session-Id (disconnect)")
	if code, ok := parseFlags(fs, args[1:], stderr); !ok {
		return code
	}
	q := url.Values{}
	for k, v := range map[string]string{"holder": *holder, "device": *device, "serial": *serial, "nas": *nas, "session": *session} {
		if v != "" {
			q.Set(k, v)
		}
	}
	selectors := 0
	for _, v := range []string{*holder, *device, *serial, *session} {
		if v != "" {
			selectors++
		}
	}
	if sub == "disconnect" && (selectors != 1 || (*nas != "" && *session == "")) {
		fmt.Fprintln(stderr, "nacd sessions disconnect: exactly one of --session, --device, --holder, --serial (--nas only with --session)")
		return exitUsage
	}
	if sub == "list" && *session != "" {
		fmt.Fprintln(stderr, "nacd sessions list: --session is for disconnect")
		return exitUsage
	}

	base, token, err := adminEndpoint(*cfgPath, *dataDir, *admin, *tokenFile)
	if err != nil {
		printErr(stderr, "sessions", err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionsTimeout)
	defer cancel()
	if sub == "list" {
		var ss []radius.Session
		if err := adminCall(ctx, http.MethodGet, base+"/-/sessions?"+q.Encode(), token, &ss); err != nil {
			printErr(stderr, "sessions list", err)
			return exitFailure
		}
		if *asJSON {
			return printJSON(stdout, stderr, ss)
		}
		printSessions(stdout, ss)
		return exitOK
	}
	var res []radius.DynAuthResult
	if err := adminCall(ctx, http.MethodPost, base+"/-/sessions/disconnect?"+q.Encode(), token, &res); err != nil {
		printErr(stderr, "sessions disconnect", err)
		return exitFailure
	}
	code := exitOK
	for _, r := range res {
		if r.Result != radius.DynAuthACK {
			code = exitFailure
		}
	}
	if *asJSON {
		if c := printJSON(stdout, stderr, res); c != exitOK {
			return c
		}
		return code
	}
	if len(res) == 0 {
		fmt.Fprintln(stdout, "no live session matches")
		return exitOK
	}
	for _, r := range res {
		line := fmt.Sprintf("%s %s on %s (%s, %s): %s after %d attempt(s)", r.Type, r.Session.ID, r.Session.NASName, r.Session.UserName, r.Session.Calling, r.Result, r.Attempts)
		if r.CauseName != "" {
			line += ", Error-Cause " + r.CauseName
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
		fmt.Fprintln(stdout, line)
	}
	return code
}

// adminEndpoint returns the daemon's admin base URL and token.
func adminEndpoint(cfgPath, dataDir, admin, tokenFile string) (base, token string, err error) {
	if admin == "" || tokenFile == "" {
		l, err := loadConfig(cfgPath, dataDir, readOnly)
		if err != nil {
			return "", "", err
		}
		if admin == "" {
			admin = l.cfg.Listen.Metrics
		}
		if tokenFile == "" {
			tokenFile = filepath.Join(l.cfg.DataDir, pki.AdminTokenFileName)
		}
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", "", fmt.Errorf("admin address %q: %w", admin, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // the admin endpoints answer loopback only
	}
	token, err = pki.ReadAdminToken(tokenFile)
	if err != nil {
		return "", "", fmt.Errorf("admin token: %w (is nacd serve running with this data dir?)", err)
	}
	return "http://" + net.JoinHostPort(host, port), token, nil
}

func adminCall(ctx context.Context, method, u, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("cannot reach nacd serve at %s: %w", req.URL.Host, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("nacd serve: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("nacd serve: HTTP %d", resp.StatusCode)
	}
	return json.Unmarshal(body, out)
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		printErr(stderr, "sessions", err)
		return exitFailure
	}
	return exitOK
}

func printSessions(w io.Writer, ss []radius.Session) {
	if len(ss) == 0 {
		fmt.Fprintln(w, "no live sessions")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tNAS\tSESSION\tUSER\tMAC\tSSID\tDEVICE\tSERIAL\tVLAN\tSITE\tIN/OUT")
	for _, s := range ss {
		vlan := "-"
		if s.VLAN != 0 {
			vlan = strconv.Itoa(s.VLAN)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\n",
			s.Started.UTC().Format(time.RFC3339), s.NASName, s.ID, dash(s.UserName), dash(s.Calling), dash(s.SSID),
			dash(s.DeviceUUID), dash(s.Serial), vlan, s.Site, bytesIEC(s.InOctets), bytesIEC(s.OutOctets))
	}
	tw.Flush()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
