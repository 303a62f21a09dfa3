package pki

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

// TestConcurrentIssuance: 50 parallel issuances give 50 unique serials and
// 50 inventory records, each matching its certificate.
func TestConcurrentIssuance(t *testing.T) {
	const n = 50
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			ctx := context.Background()
			csrs := make([]*x509.CertificateRequest, n)
			for i := range csrs {
				csrs[i] = ctCSR(t, nil, nil)
			}
			var wg sync.WaitGroup
			chains := make([][]*x509.Certificate, n)
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					// Half share one holder: index updates contend.
					email := fmt.Sprintf("user%d@eastherts.gov.uk", i)
					if i%2 == 0 {
						email = "shared@eastherts.gov.uk"
					}
					chains[i], errs[i] = ca.Issue(ctx, csrs[i], ctStaffFacts(email), "test")
				}(i)
			}
			wg.Wait()
			serials := map[string]bool{}
			for i := 0; i < n; i++ {
				if errs[i] != nil {
					t.Fatalf("issuance %d: %v", i, errs[i])
				}
				serials[chains[i][0].SerialNumber.Text(16)] = true
			}
			if len(serials) != n {
				t.Fatalf("%d unique serials from %d issuances", len(serials), n)
			}
			rs, err := ca.List(ctx, ListFilter{})
			if err != nil || len(rs) != n {
				t.Fatalf("%d records (%v), want %d", len(rs), err, n)
			}
			for _, r := range rs {
				if !serials[r.Serial] {
					t.Fatalf("record %s for no issued certificate", r.Serial)
				}
				c, err := x509.ParseCertificate(r.Certificate)
				if err != nil || c.SerialNumber.Text(16) != r.Serial {
					t.Fatalf("record %s holds certificate %v (%v)", r.Serial, c, err)
				}
			}
			shared, err := ca.List(ctx, ListFilter{Holder: "shared@eastherts.gov.uk"})
			if err != nil || len(shared) != n/2 {
				t.Fatalf("shared holder: %d records (%v), want %d", len(shared), err, n/2)
			}
		})
	}
}

func TestTokenTable(t *testing.T) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			tok := ca.Tokens()
			ctx := context.Background()
			if err := tok.Put(ctx, "t1", []byte("facts")); err != nil {
				t.Fatal(err)
			}
			if err := tok.Put(ctx, "t1", []byte("other")); !errors.Is(err, ErrExists) {
				t.Fatalf("second Put: %v", err)
			}
			if v, used, err := tok.Get(ctx, "t1"); err != nil || used || string(v) != "facts" {
				t.Fatalf("Get: %q %t %v", v, used, err)
			}
			if _, _, err := tok.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get missing: %v", err)
			}
			if _, err := tok.Consume(ctx, "missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Consume missing: %v", err)
			}
			if err := tok.Put(ctx, "", nil); err == nil {
				t.Fatal("empty id accepted")
			}
			// 20 concurrent consumers: exactly one gets the value.
			var wins, used atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := tok.Consume(ctx, "t1")
					switch {
					case err == nil && string(v) == "facts":
						wins.Add(1)
					case errors.Is(err, ErrTokenUsed):
						used.Add(1)
					default:
						t.Errorf("Consume: %q %v", v, err)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 || used.Load() != 19 {
				t.Fatalf("%d consumers got the token, %d were refused", wins.Load(), used.Load())
			}
			if _, used, err := tok.Get(ctx, "t1"); err != nil || !used {
				t.Fatalf("Get after Consume: used %t %v", used, err)
			}
			if err := tok.Put(ctx, "t2", []byte("x")); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			if err := tok.List(ctx, func(id string, _ []byte, used bool) error { seen[id] = used; return nil }); err != nil {
				t.Fatal(err)
			}
			if len(seen) != 2 || !seen["t1"] || seen["t2"] {
				t.Fatalf("List: %v", seen)
			}
			if err := tok.Delete(ctx, "t1"); err != nil {
				t.Fatal(err)
			}
			if err := tok.Delete(ctx, "t1"); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
			if _, _, err := tok.Get(ctx, "t1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after Delete: %v", err)
			}
		})
	}
}

func TestInitCA(t *testing.T) {
	t.Run("refuses to overwrite, force replaces", func(t *testing.T) {
		cfg := CAConfig{DataDir: t.TempDir()}
		if err := InitCA(cfg, false); err != nil {
			t.Fatal(err)
		}
		root1, _ := os.ReadFile(CARootFile(cfg.DataDir))
		if err := InitCA(cfg, false); !errors.Is(err, ErrCAExists) {
			t.Fatalf("second init: %v", err)
		}
		root2, _ := os.ReadFile(CARootFile(cfg.DataDir))
		if string(root1) != string(root2) {
			t.Fatal("refused init changed the root")
		}
		if err := InitCA(cfg, true); err != nil {
			t.Fatal(err)
		}
		root3, _ := os.ReadFile(CARootFile(cfg.DataDir))
		if string(root3) == string(root1) {
			t.Fatal("--force kept the old root")
		}
		for _, f := range []string{"root.key", "intermediate.key"} {
			st, err := os.Stat(filepath.Join(CADir(cfg.DataDir), f))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: mode %v (%v)", f, st.Mode().Perm(), err)
			}
		}
		root, err := readOneCert(CARootFile(cfg.DataDir))
		if err != nil || !root.IsCA || root.NotAfter.Sub(root.NotBefore) < 19*365*24*time.Hour {
			t.Fatalf("root %v validity %s..%s", err, root.NotBefore, root.NotAfter)
		}
	})
	t.Run("passphrase file encrypts the keys", func(t *testing.T) {
		dir := t.TempDir()
		pass := filepath.Join(dir, "pass")
		if err := os.WriteFile(pass, []byte("correct horse\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := CAConfig{DataDir: filepath.Join(dir, "data"), PassphraseFile: pass}
		if err := InitCA(cfg, false); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(CADir(cfg.DataDir), "intermediate.key"))
		if !strings.Contains(string(key), "ENCRYPTED") {
			t.Fatalf("key not encrypted:\n%s", key)
		}
		t.Setenv(PassphraseEnv, "")
		if _, err := OpenCA(context.Background(), CAConfig{DataDir: cfg.DataDir}); err == nil || !strings.Contains(err.Error(), PassphraseEnv) {
			t.Fatalf("open without passphrase: %v", err)
		}
		t.Setenv(PassphraseEnv, "wrong")
		if _, err := OpenCA(context.Background(), CAConfig{DataDir: cfg.DataDir}); err == nil {
			t.Fatal("opened with a wrong passphrase")
		}
		t.Setenv(PassphraseEnv, "correct horse")
		ca, err := OpenCA(context.Background(), CAConfig{DataDir: cfg.DataDir})
		if err != nil {
			t.Fatalf("open with the env passphrase: %v", err)
		}
		_ = ca.Close()
	})
	t.Run("group-readable key refused", func(t *testing.T) {
		cfg := CAConfig{DataDir: t.TempDir()}
		if err := InitCA(cfg, false); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(CADir(cfg.DataDir), "intermediate.key"), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenCA(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("open with a 0640 key: %v", err)
		}
	})
}

func TestCloseIsFinal(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ca.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), ctStaffFacts("a@b.uk"), "t"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Issue after Close: %v", err)
	}
	// The bbolt file lock is released: the data dir opens again.
	again, err := OpenCA(context.Background(), ca.cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	_ = again.Close()
}

// TestReconcileUnrecordedCertificate: a certificate step stored but nacd
// did not record (process killed between the two) is recorded at open.
func TestReconcileUnrecordedCertificate(t *testing.T) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			f, err := ctStaffFacts("orphan@eastherts.gov.uk").normalise()
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			chain, err := ca.sign(context.Background(), ctCSR(t, nil, nil), deviceProfile{f: f, notBefore: now, notAft: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Status(context.Background(), chain[0].SerialNumber); !errors.Is(err, ErrNotFound) {
				t.Fatalf("before reopen: %v", err)
			}
			_ = ca.Close()
			again, err := OpenCA(context.Background(), ca.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			rec, err := again.Status(context.Background(), chain[0].SerialNumber)
			if err != nil || rec.IssuedBy != "recovered" || rec.Email != f.Email || rec.DeviceUUID != f.DeviceUUID || rec.Role != policy.RoleStaff {
				t.Fatalf("after reopen: %+v %v", rec, err)
			}
		})
	}
}

func TestBootstrapFromCA(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ctx := context.Background()
	r, err := ca.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Created || r.CAKey != "" {
		t.Fatalf("first Bootstrap: created %t, CA key path %q", r.Created, r.CAKey)
	}
	if err := r.Server.CheckSignatureFrom(ca.Intermediate()); err != nil || r.Server.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("server certificate: %v %v", err, r.Server.ExtKeyUsage)
	}
	ts, err := NewTrustStore([]AnchorConfig{r.Anchor()})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range r.Demo {
		data, err := os.ReadFile(p.Cert)
		if err != nil {
			t.Fatal(err)
		}
		var chain []*x509.Certificate
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, c)
		}
		if id := ts.VerifyClient(chain, time.Now()); id.Status != policy.CertOK || id.Revocation.Source != "store" {
			t.Fatalf("demo %s: %s %+v", name, id.Status, id.Revocation)
		}
	}
	// pki.Bootstrap (policy explain, in another process) loads the same
	// files read-only and checks revocation with the CRL file.
	ro, err := Bootstrap(ca.cfg.DataDir, time.Now())
	if err != nil {
		t.Fatalf("pki.Bootstrap on the CA's data dir: %v", err)
	}
	if ro.Created || ro.CACert != r.CACert || ro.Demo["staff-laptop"] != r.Demo["staff-laptop"] {
		t.Fatalf("read-only bootstrap %+v", ro)
	}
	tsRO, err := NewTrustStore([]AnchorConfig{ro.Anchor()})
	if err != nil {
		t.Fatal(err)
	}
	if id := tsRO.VerifyClient([]*x509.Certificate{ro.DemoCerts["staff-laptop"]}, time.Now()); id.Status != policy.CertOK || id.Revocation.Source != "crl:nacd-local" || !id.Revocation.Checked {
		t.Fatalf("read-only anchor: %s %+v", id.Status, id.Revocation)
	}
	if _, err := os.Stat(filepath.Join(ca.cfg.DataDir, "pki", "ca.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a CA key was written outside the CA dir: %v", err)
	}
	again, err := ca.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Server.SerialNumber.Cmp(r.Server.SerialNumber) != 0 {
		t.Fatal("second Bootstrap replaced valid certificates")
	}
	// Revoking a demo device makes Bootstrap issue a new one.
	staff := r.DemoCerts["staff-laptop"]
	if err := ca.Revoke(ctx, staff.SerialNumber.Text(16), ReasonKeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	third, err := ca.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if third.DemoCerts["staff-laptop"].SerialNumber.Cmp(staff.SerialNumber) == 0 {
		t.Fatal("revoked demo certificate kept")
	}
}

// killChildEnv makes the test binary a child that issues certificates in
// a loop, printing each chain once Issue returned (TestKillHelperProcess).
const killChildEnv = "NACD_TEST_CA_KILL_CHILD"

// TestKillHelperProcess is the child of TestKillDuringIssuance.
func TestKillHelperProcess(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("helper process for TestKillDuringIssuance")
	}
	ca, err := OpenCA(context.Background(), CAConfig{DataDir: dir, Store: os.Getenv(killChildEnv + "_STORE")})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				csr := ctCSR(t, nil, nil)
				chain, err := ca.Issue(context.Background(), csr, ctStaffFacts("burst@eastherts.gov.uk"), "burst")
				if err != nil {
					fmt.Println("ERROR", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Printf("ISSUED %s\n", chain[0].SerialNumber.Text(16))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKillDuringIssuance: kill -9 of a process in a burst of issuance
// leaves a consistent store: every certificate it handed out (printed
// after Issue returned) is in the inventory, and every certificate step
// stored is in the inventory after the next open.
func TestKillDuringIssuance(t *testing.T) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			store := ctStore(t, kind)
			dir := t.TempDir()
			if err := InitCA(CAConfig{DataDir: dir}, false); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), killChildEnv+"="+dir, killChildEnv+"_STORE="+store, ctPostgresDSNEnv+"=")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var handed []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "ERROR") {
					_ = cmd.Process.Kill()
					t.Fatalf("child: %s", line)
				}
				if s, ok := strings.CutPrefix(line, "ISSUED "); ok {
					handed = append(handed, s)
					if len(handed) == 60 {
						_ = cmd.Process.Kill() // SIGKILL, mid-burst
						break
					}
				}
			}
			_ = cmd.Wait()
			if len(handed) < 60 {
				t.Fatalf("child printed only %d certificates", len(handed))
			}
			ca, err := OpenCA(context.Background(), CAConfig{DataDir: dir, Store: store})
			if err != nil {
				t.Fatalf("open after kill -9: %v", err)
			}
			defer ca.Close()
			rs, err := ca.List(context.Background(), ListFilter{Holder: "burst@eastherts.gov.uk"})
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, r := range rs {
				have[r.Serial] = true
			}
			for _, s := range handed {
				if !have[s] {
					t.Fatalf("certificate %s was handed out but is not in the inventory", s)
				}
			}
			es, err := stepCerts(ca.authDB)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != len(rs) {
				t.Fatalf("step stored %d certificates, inventory holds %d", len(es), len(rs))
			}
			t.Logf("%s: %d handed out before kill -9, %d recorded", kind, len(handed), len(rs))
		})
	}
}

// BenchmarkIssue is issuance per second (sign + step's record + nacd's
// inventory record), sequential and parallel, per store.
func BenchmarkIssue(b *testing.B) {
	for _, kind := range ctStoreKinds {
		b.Run(kind, func(b *testing.B) {
			ca := ctOpen(b, kind)
			csr := ctCSR(b, nil, nil)
			f := ctStaffFacts("bench@eastherts.gov.uk")
			b.Run("sequential", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := ca.Issue(context.Background(), csr, f, "bench"); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			})
			b.Run("parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := ca.Issue(context.Background(), csr, f, "bench"); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			})
		})
	}
}

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	ca, b, err := OpenLocal(context.Background(), CAConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if !b.Created || b.Revocations == nil || b.Anchor().Revocations == nil || b.CACert != filepath.Join(dir, "pki", "ca.crt") {
		t.Fatalf("OpenLocal result %+v", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "demo", "staff-laptop.crt")); err != nil {
		t.Fatal(err)
	}
}
