// Command nacd is the network access control daemon: a RADIUS server running
// EAP-TLS that places devices on VLANs per the PSN segregation rules.
//
//	nacd serve        [--config FILE] [--data-dir DIR]
//	nacd config check [--config FILE] [--data-dir DIR]
//	nacd policy explain --cert FILE [--chain FILE] --site SITE [--ssid S] [--config FILE] [--data-dir DIR] [--json]
//	nacd loadtest --server HOST:PORT ... (a lab load generator; see nacd loadtest -h)
//	nacd version
//
// Exit codes: 0 success; 1 failure (invalid configuration, a listener that
// cannot bind, a certificate that cannot be read, ...); 2 usage error (an
// unknown command or flag).
//
// The binary is thin: it parses flags and wires the packages together
// (internal/config, pki, policy, radius, internal/audit). It must never
// print a shared secret other than the one it generates for the built-in
// loopback client, once, when it creates it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// DefaultConfigPath is read when --config is not given; when it does not
// exist either, nacd runs the built-in configuration.
const DefaultConfigPath = "/etc/nacd/nacd.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one nacd command with args (without the program name) and
// returns the exit code; tests drive it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops `serve`.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr, nil)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprintln(stderr, "nacd: usage: nacd config check [--config FILE] [--data-dir DIR]")
			return exitUsage
		}
		return cmdConfigCheck(args[2:], stdout, stderr)
	case "policy":
		if len(args) < 2 || args[1] != "explain" {
			fmt.Fprintln(stderr, "nacd: usage: nacd policy explain --cert FILE [--chain FILE] --site SITE [--ssid S] [--config FILE] [--json]")
			return exitUsage
		}
		return cmdPolicyExplain(args[2:], stdout, stderr)
	case "loadtest":
		return runLoadtest(args[1:], stdout, stderr)
	case "audit":
		return runAudit(args[1:], stdout, stderr)
	case "sessions":
		return runSessions(args[1:], stdout, stderr)
	case "ca":
		return runCA(args[1:], stdout, stderr)
	case "enroll":
		return runEnroll(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "nacd: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  nacd serve        [--config FILE] [--data-dir DIR]   run the RADIUS server and metrics
  nacd config check [--config FILE] [--data-dir DIR]   validate a configuration and its policy
  nacd policy explain --cert FILE [--chain FILE] --site SITE [--ssid S] [--config FILE] [--json]
                                                       show the decision for a certificate
  nacd loadtest --server HOST:PORT ...                 lab load generator (nacd loadtest -h)
  nacd sessions list|disconnect ...                   live sessions (asks the running daemon)
  nacd audit verify|query ...                          check or search the access log (nacd audit -h)
  nacd version                                         print the version

Without --config, nacd reads `+DefaultConfigPath+`, or runs the built-in
configuration (configs/nacd.example.yaml) when that file does not exist.
Exit codes: 0 success, 1 failure, 2 usage error.
`)
}

// newFlagSet returns a flag set that reports errors to stderr without
// exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nacd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and refuses positional arguments. ok is false
// when the caller must return code.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), strings.Join(fs.Args(), " "))
		return exitUsage, false
	}
	return exitOK, true
}
