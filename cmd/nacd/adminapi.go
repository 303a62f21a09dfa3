package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herts-council/nacd/pki"
)

// adminAPI calls the running nacd's PKI admin API (listen.pki) with the
// admin bearer token from the data directory, verifying the server against
// nacd's CA root.
type adminAPI struct {
	server  string // https://host:port, no trailing slash
	dataDir string
	caFile  string // "" = DATA_DIR's CA root
}

// newAdminAPI checks server (an https URL).
func newAdminAPI(server, dataDir, caFile string) (*adminAPI, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want https://host:port", server)
	}
	return &adminAPI{server: strings.TrimRight(server, "/"), dataDir: dataDir, caFile: caFile}, nil
}

// listening reports whether something accepts connections at the server's
// address: false only when the connection is refused (no nacd running
// there), so a firewall or a slow server is not mistaken for "not running".
func (a *adminAPI) listening() bool {
	u, _ := url.Parse(a.server)
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "443")
	}
	c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if c != nil {
		c.Close()
	}
	return !isNotListening(err)
}

// call sends body (JSON-encoded unless nil) to method path and decodes the
// answer into out when the status is want; any other status is an error
// with the API's error text.
func (a *adminAPI) call(ctx context.Context, method, path string, body, out any, want int) error {
	caFile := a.caFile
	if caFile == "" {
		caFile = pki.CARootFile(a.dataDir)
	}
	pool := x509.NewCertPool()
	if pemData, err := os.ReadFile(caFile); err != nil {
		return fmt.Errorf("CA root for %s: %w", a.server, err)
	} else if !pool.AppendCertsFromPEM(pemData) {
		return fmt.Errorf("CA root %s: no PEM certificate", caFile)
	}
	tok, err := pki.ReadAdminToken(filepath.Join(a.dataDir, pki.AdminTokenFileName))
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     serverTLS(pool, a.server),
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != want {
		var e struct{ Error, Reason string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %d %s: %s", a.server, resp.StatusCode, e.Error, e.Reason)
		}
		return fmt.Errorf("%s: HTTP %d", a.server, resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: %w", a.server, err)
	}
	return nil
}
