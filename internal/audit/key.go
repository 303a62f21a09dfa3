package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Seal key files in the data directory.
const (
	SealKeyFile    = "audit-seal.key" // PKCS#8 PEM, 0600
	SealPubKeyFile = "audit-seal.pub" // PKIX PEM, 0644: give it to auditors
)

// LoadOrCreateSealKey reads dir/audit-seal.key, creating it (0600, with
// dir/audit-seal.pub next to it) on first use.
func LoadOrCreateSealKey(dir string) (ed25519.PrivateKey, error) {
	keyPath := filepath.Join(dir, SealKeyFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: seal key: %w", err)
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: seal key: %w", err)
		}
		if err := errors.Join(pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}), f.Sync(), f.Close()); err != nil {
			return nil, fmt.Errorf("audit: seal key: %w", err)
		}
		if err := writePub(filepath.Join(dir, SealPubKeyFile), priv.Public().(ed25519.PublicKey)); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: seal key: %w", err)
	}
	if st, err := os.Stat(keyPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit: seal key %s is readable by others (mode %v; want 0600)", keyPath, st.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit: seal key %s: not a PEM private key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: seal key %s: %w", keyPath, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: seal key %s: not an Ed25519 key", keyPath)
	}
	pubPath := filepath.Join(dir, SealPubKeyFile)
	if _, err := os.Stat(pubPath); errors.Is(err, os.ErrNotExist) {
		if err := writePub(pubPath, priv.Public().(ed25519.PublicKey)); err != nil {
			return nil, err
		}
	}
	return priv, nil
}

func writePub(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("audit: seal public key: %w", err)
	}
	return nil
}

// ReadPublicKey reads a seal public key (PKIX PEM).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: not a PEM public key", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 public key", path)
	}
	return pub, nil
}
