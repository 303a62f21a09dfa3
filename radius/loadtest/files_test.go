package loadtest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herts-council/nacd/radius/loadtest"
)

func TestLoadFiles(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	staff := p.personas[personaStaff].WriteFiles(t, dir, personaStaff)
	visitor := p.personas[personaVisitor].WriteFiles(t, dir, personaVisitor)
	tests := []struct {
		name             string
		cert, key, chain string
		wantCerts        int
		wantErr          bool
	}{
		{"leaf, key and chain (leaf not repeated)", staff.Cert, staff.Key, staff.Chain, 2, false},
		{"chain file as the certificate", staff.Chain, staff.Key, "", 2, false},
		{"leaf alone", staff.Cert, staff.Key, "", 1, false},
		{"RSA persona", visitor.Cert, visitor.Key, visitor.Chain, 2, false},
		{"key of another certificate", staff.Cert, visitor.Key, "", 0, true},
		{"missing key", staff.Cert, filepath.Join(dir, "nope.key"), "", 0, true},
		{"chain without certificates", staff.Cert, staff.Key, staff.Key, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := loadtest.LoadIdentity(tt.cert, tt.key, tt.chain)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil || len(id.Certificate.Certificate) != tt.wantCerts || id.Certificate.Leaf == nil {
				t.Fatalf("certs %d (want %d), leaf %v, err %v", len(id.Certificate.Certificate), tt.wantCerts, id.Certificate.Leaf != nil, err)
			}
		})
	}
	t.Run("directory of personas, sorted, chains used", func(t *testing.T) {
		ids, err := loadtest.LoadIdentityDir(dir)
		if err != nil || len(ids) != 2 {
			t.Fatalf("%d identities, %v", len(ids), err)
		}
		if ids[0].Certificate.Leaf.Subject.CommonName != personaStaff || len(ids[1].Certificate.Certificate) != 2 {
			t.Fatalf("order or chain wrong: %s, %d certs", ids[0].Certificate.Leaf.Subject.CommonName, len(ids[1].Certificate.Certificate))
		}
	})
	t.Run("directory with a key but no certificate", func(t *testing.T) {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, "lonely.key"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadtest.LoadIdentityDir(bad); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		if _, err := loadtest.LoadIdentityDir(t.TempDir()); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("CA pool", func(t *testing.T) {
		ca := p.serverRoot.WriteCert(t, dir, "server-root")
		if pool, err := loadtest.LoadCertPool(ca); err != nil || pool == nil {
			t.Fatalf("LoadCertPool: %v", err)
		}
		if _, err := loadtest.LoadCertPool(staff.Key); err == nil {
			t.Fatal("a key file loaded as a CA pool")
		}
	})
}
