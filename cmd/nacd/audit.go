package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/audit"
	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/radius"
)

// openAccessLog opens the tamper-evident access log per cfg.Log, sealed
// with data_dir/audit-seal.key (created on first use, with
// audit-seal.pub next to it for auditors).
func openAccessLog(cfg *config.Config, logger *zap.Logger, reg prometheus.Registerer) (*audit.Sink, error) {
	key, err := audit.LoadOrCreateSealKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	pol, err := audit.ParseWritePolicy(cfg.Log.OnWriteError)
	if err != nil {
		return nil, fmt.Errorf("log.on_write_error: %w", err)
	}
	return audit.OpenSink(audit.Options{
		Path:         cfg.Log.AccessLog,
		Stream:       cfg.Log.AccessLogStream,
		MaxSize:      cfg.Log.AccessLogMaxSize,
		MaxAge:       cfg.Log.AccessLogMaxAge,
		SealKey:      key,
		SealEvery:    cfg.Log.AuditSealEvery,
		SealInterval: cfg.Log.AuditSealInterval,
		OnWriteError: pol,
		Registerer:   reg,
		Logger:       logger.Named("audit"),
	})
}

// readyChecks are serve's readiness checks (/readyz).
func readyChecks(cfg *config.Config, store *pki.TrustStore, sessions *radius.SessionTable, sink *audit.Sink) []readyCheck {
	return []readyCheck{
		{name: "config", check: func(context.Context) error {
			if cfg == nil || len(cfg.Clients) == 0 {
				return errors.New("no configuration loaded")
			}
			return nil
		}},
		{name: "store", check: func(ctx context.Context) error {
			if sessions == nil {
				return nil
			}
			_, err := sessions.List(ctx, radius.SessionFilter{ID: "nacd-readyz-probe"})
			return err
		}},
		{name: "crl", check: func(context.Context) error { return store.CheckFresh(time.Now()) }},
		{name: "audit", check: func(context.Context) error { return sink.Err() }},
	}
}

// Exit codes of `nacd audit verify` (docs/audit-log.md).
const (
	exitVerifyBroken   = 1 // the chain is broken or a seal is forged: the first bad record is named
	exitVerifyUnsealed = 3 // the chain is intact but records after the last seal (or all, without --pubkey) are not sealed
	exitVerifyIO       = 4 // a file or the key cannot be read
)

// runAudit runs `nacd audit verify|query`.
func runAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, auditUsage)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "query":
		return auditQuery(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, auditUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "nacd audit: unknown command %q\n%s\n", args[0], auditUsage)
	return exitUsage
}

const auditUsage = `usage:
  nacd audit verify [--pubkey FILE] FILE...       check the hash chain across FILEs (oldest first) and every seal
  nacd audit query [--holder E] [--device U] [--serial S] [--nas N] [--since T] [--until T]
                   [--result accept|reject] [--format json|table|csv] FILE...
verify exit codes: 0 intact and sealed, 1 altered/removed/reordered/truncated or forged seal (first bad record named),
  2 usage, 3 intact but records after the last seal are not sealed (or no --pubkey), 4 a file or key cannot be read.`

// filesFlagSet parses flags then takes the remaining arguments as files
// (flags may come before the files).
func auditFlags(name string, stderr io.Writer, args []string, fs *flag.FlagSet) ([]string, int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK, false
		}
		return nil, exitUsage, false
	}
	files := fs.Args()
	if len(files) == 0 {
		fmt.Fprintf(stderr, "nacd audit %s: no FILE given\n%s\n", name, auditUsage)
		return nil, exitUsage, false
	}
	return files, exitOK, true
}

func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit verify", stderr)
	pubPath := fs.String("pubkey", "", "seal public key (data_dir/"+audit.SealPubKeyFile+"); without it seals are not checked")
	files, code, ok := auditFlags("verify", stderr, args, fs)
	if !ok {
		return code
	}
	var pub ed25519.PublicKey
	if *pubPath != "" {
		k, err := audit.ReadPublicKey(*pubPath)
		if err != nil {
			fmt.Fprintf(stderr, "nacd audit verify: %v\n", err)
			return exitVerifyIO
		}
		pub = k
	}
	res, err := audit.Verify(files, pub)
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve):
		fmt.Fprintf(stdout, "BROKEN %s:%d seq %d: %s: %s\n", ve.File, ve.Line, ve.Seq, ve.Problem, ve.Detail)
		fmt.Fprintf(stdout, "verified before it: %d records in %d file(s)\n", res.Records, res.Files)
		return exitVerifyBroken
	case err != nil:
		fmt.Fprintf(stderr, "nacd audit verify: %v\n", err)
		return exitVerifyIO
	}
	fmt.Fprintf(stdout, "chain intact: %d records (seq %d..%d) in %d file(s), %d seals verified\n",
		res.Records, res.FirstSeq, res.LastSeq, res.Files, res.Seals)
	if !res.Start {
		fmt.Fprintf(stdout, "note: the chain starts at seq %d: earlier files were not given\n", res.FirstSeq)
	}
	if pub == nil {
		fmt.Fprintln(stdout, "UNSEALED: no --pubkey: seals not checked, the chain alone does not prove records were not rewritten")
		return exitVerifyUnsealed
	}
	if res.Unsealed > 0 {
		fmt.Fprintf(stdout, "UNSEALED: %d records after the last seal (a live file's tail; they are chained but not signed yet)\n", res.Unsealed)
		return exitVerifyUnsealed
	}
	return exitOK
}

func auditQuery(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit query", stderr)
	var q audit.Query
	fs.StringVar(&q.Holder, "holder", "", "holder e-mail (user.email / holder.email)")
	fs.StringVar(&q.Device, "device", "", "device UUID (device.id / device.uuid)")
	fs.StringVar(&q.Serial, "serial", "", "certificate serial, hex")
	fs.StringVar(&q.NAS, "nas", "", "NAS name or IP")
	since := fs.String("since", "", "records at or after T (RFC 3339, or YYYY-MM-DD UTC)")
	until := fs.String("until", "", "records before T (RFC 3339, or YYYY-MM-DD UTC)")
	fs.StringVar(&q.Result, "result", "", "accept or reject")
	format := fs.String("format", "json", "json (the records as written), table or csv")
	files, code, ok := auditFlags("query", stderr, args, fs)
	if !ok {
		return code
	}
	var err error
	if q.Since, err = parseQueryTime(*since); err != nil {
		fmt.Fprintf(stderr, "nacd audit query: --since: %v\n", err)
		return exitUsage
	}
	if q.Until, err = parseQueryTime(*until); err != nil {
		fmt.Fprintf(stderr, "nacd audit query: --until: %v\n", err)
		return exitUsage
	}
	if q.Result != "" && q.Result != "accept" && q.Result != "reject" {
		fmt.Fprintf(stderr, "nacd audit query: --result %q: want accept or reject\n", q.Result)
		return exitUsage
	}
	if q == (audit.Query{}) {
		fmt.Fprintf(stderr, "nacd audit query: give at least one of --holder, --device, --serial, --nas, --since, --until, --result\n")
		return exitUsage
	}
	out, err := newQueryWriter(stdout, *format)
	if err != nil {
		fmt.Fprintf(stderr, "nacd audit query: %v\n", err)
		return exitUsage
	}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "nacd audit query: %v\n", err)
			return exitFailure
		}
		err = q.Run(f, out.write)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "nacd audit query: %s: %v\n", path, err)
			return exitFailure
		}
	}
	if err := out.flush(); err != nil {
		fmt.Fprintf(stderr, "nacd audit query: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func parseQueryTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, e.g. 2026-11-26T09:00:00Z, or 2026-11-26)", s)
}

// queryColumns are the table and CSV columns.
var queryColumns = []string{"time", "seq", "action", "result", "segment", "nas", "site", "holder", "device", "serial", "reason"}

func queryRow(r *audit.Record) []string {
	return []string{r.Time, strconv.FormatUint(r.Seq, 10), first(r.Action, r.Msg), r.ResultName(), r.Segment,
		first(r.NASName, r.NASIP), r.Site, r.HolderEmail(), r.Device(), r.Serial(), r.Reason}
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type queryWriter struct {
	w      *bufio.Writer
	csv    *csv.Writer
	format string
	rows   int
}

func newQueryWriter(w io.Writer, format string) (*queryWriter, error) {
	q := &queryWriter{w: bufio.NewWriterSize(w, 64<<10), format: format}
	switch format {
	case "json":
	case "csv":
		q.csv = csv.NewWriter(q.w)
		if err := q.csv.Write(queryColumns); err != nil {
			return nil, err
		}
	case "table":
		q.tableRow(queryColumns)
	default:
		return nil, fmt.Errorf("--format %q: want json, table or csv", format)
	}
	return q, nil
}

// tableWidths are fixed so the table streams (no buffering of all rows).
var tableWidths = []int{24, 8, 22, 6, 10, 16, 12, 28, 36, 24, 0}

func (q *queryWriter) tableRow(cols []string) {
	for i, c := range cols {
		if i == len(cols)-1 {
			q.w.WriteString(c)
			break
		}
		fmt.Fprintf(q.w, "%-*s ", tableWidths[i], c)
	}
	q.w.WriteByte('\n')
}

func (q *queryWriter) write(line []byte, r *audit.Record) error {
	q.rows++
	switch q.format {
	case "json":
		q.w.Write(line)
		return q.w.WriteByte('\n')
	case "csv":
		return q.csv.Write(queryRow(r))
	default:
		q.tableRow(queryRow(r))
		return nil
	}
}

func (q *queryWriter) flush() error {
	if q.csv != nil {
		q.csv.Flush()
		if err := q.csv.Error(); err != nil {
			return err
		}
	}
	return q.w.Flush()
}
