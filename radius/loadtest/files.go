package loadtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadIdentity reads a client certificate (PEM; it may hold the chain,
// leaf first), its private key (PEM) and, when chainFile is not empty, the
// intermediates to send after the leaf (a PEM bundle; a copy of the leaf in
// it is skipped).
func LoadIdentity(certFile, keyFile, chainFile string) (Identity, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return Identity{}, fmt.Errorf("loadtest: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return Identity{}, fmt.Errorf("loadtest: read key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("loadtest: %s with %s: %w", certFile, keyFile, err)
	}
	if chainFile != "" {
		b, err := os.ReadFile(chainFile)
		if err != nil {
			return Identity{}, fmt.Errorf("loadtest: read chain: %w", err)
		}
		ders, err := pemCertificates(b)
		if err != nil {
			return Identity{}, fmt.Errorf("loadtest: chain %s: %w", chainFile, err)
		}
		for _, der := range ders {
			if !containsDER(cert.Certificate, der) {
				cert.Certificate = append(cert.Certificate, der)
			}
		}
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Identity{}, fmt.Errorf("loadtest: parse %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	return Identity{Certificate: cert}, nil
}

// LoadIdentityDir loads every persona of a directory: each <name>.key with
// its <name>.crt, and <name>-chain.crt as the chain when present (the
// layout of `nacd serve`'s demo devices and of internal/testpki). Names
// are sorted, so round-robin order is stable.
func LoadIdentityDir(dir string) ([]Identity, error) {
	keys, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	var out []Identity
	for _, k := range keys {
		base := strings.TrimSuffix(k, ".key")
		cert := base + ".crt"
		if _, err := os.Stat(cert); err != nil {
			return nil, fmt.Errorf("loadtest: %s has no certificate %s", k, cert)
		}
		chain := base + "-chain.crt"
		if _, err := os.Stat(chain); err != nil {
			chain = ""
		}
		id, err := LoadIdentity(cert, k, chain)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("loadtest: no <name>.key/<name>.crt pair in %s", dir)
	}
	return out, nil
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("loadtest: read CA file: %w", err)
	}
	ders, err := pemCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("loadtest: CA file %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("loadtest: CA file %s: %w", file, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

func pemCertificates(b []byte) ([][]byte, error) {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func containsDER(list [][]byte, der []byte) bool {
	for _, d := range list {
		if bytes.Equal(d, der) {
			return true
		}
	}
	return false
}
