// Package smtptest runs a real SMTP server for tests: Debian's aiosmtpd
// (python3-aiosmtpd) with its Debugging handler, which prints every
// message it receives, on a free 127.0.0.1 port.
package smtptest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testtool"
)

// Server is a running aiosmtpd and what it printed.
type Server struct {
	Addr string // host:port

	mu  sync.Mutex
	out bytes.Buffer
}

// Write collects aiosmtpd's output.
func (s *Server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

// Output is what aiosmtpd printed so far (the messages it received).
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// WaitFor waits up to 20 s until the server printed sub.
func (s *Server) WaitFor(sub string) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(s.Output(), sub) {
			return true
		}
	}
	return false
}

// Start runs aiosmtpd until the test ends (testtool.Require: skipped
// loudly without it locally, a failure in CI). With tlsFiles (certificate,
// key) it offers STARTTLS and requires it before MAIL.
func Start(tb testing.TB, tlsFiles ...string) *Server {
	tb.Helper()
	bin := testtool.Require(tb, "aiosmtpd") // Debian: python3-aiosmtpd
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String()}
	ln.Close()
	args := []string{"-n", "-l", s.Addr}
	if len(tlsFiles) == 2 {
		args = append(args, "--tlscert", tlsFiles[0], "--tlskey", tlsFiles[1])
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("aiosmtpd did not listen on %s: %s", s.Addr, s.Output())
		}
	}
}
