package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/herts-council/nacd/policy"
)

// Chain field names, added by the sink to every record (after the caller's
// fields). event.sequence is ECS; hash_prev has no ECS counterpart.
const (
	FieldSequence = "event.sequence"
	FieldHashPrev = "hash_prev"

	// Seal records (msg and event.action "audit-seal").
	FieldSealFirst     = "nacd.seal.first_sequence" // first record the seal covers (after the previous seal)
	FieldSealRecords   = "nacd.seal.records"        // records since the previous seal
	FieldSealKeyID     = "nacd.seal.key_id"         // first 16 hex digits of SHA-256 of the public key
	FieldSealSignature = "nacd.seal.signature"      // base64 Ed25519 signature of SealMessage
	FieldSealReason    = "nacd.seal.reason"         // count | interval | rotate | close

	// ActionSeal is the event.action (and msg) of a seal record.
	ActionSeal = "audit-seal"
	// ActionLost is the record written, once the log is writable again,
	// that counts records nacd could not write (the queue bound was hit).
	ActionLost = "audit-records-lost"
)

// GenesisHash is the hash_prev of the first record of a new chain.
var GenesisHash = strings.Repeat("0", 64)

// WritePolicy is what nacd does with authentications while the audit log
// cannot be written (log.on_write_error).
type WritePolicy string

const (
	// FailClosedIL3 rejects authentications whose decision is il3 while
	// the log is failing and keeps serving the others (the default).
	FailClosedIL3 WritePolicy = "fail_closed_il3"
	// FailClosed rejects every authentication while the log is failing.
	FailClosed WritePolicy = "fail_closed"
	// KeepServing keeps answering; the failure is counted
	// (nacd_audit_write_errors_total) and logged.
	KeepServing WritePolicy = "keep_serving"
)

// ParseWritePolicy parses log.on_write_error ("" is the default).
func ParseWritePolicy(s string) (WritePolicy, error) {
	switch p := WritePolicy(s); p {
	case "":
		return FailClosedIL3, nil
	case FailClosedIL3, FailClosed, KeepServing:
		return p, nil
	}
	return "", fmt.Errorf("%q is not a write policy (want fail_closed, fail_closed_il3 or keep_serving)", s)
}

// Defaults.
const (
	DefaultSealEvery    = 1000
	DefaultSealInterval = 5 * time.Minute
	DefaultQueueSize    = 10000
	// Syslog is the access-log "path" that sends each record to the local
	// syslog daemon (facility auth, tag nacd).
	Syslog = "syslog"
)

// ErrUnavailable is returned by Gate while the log cannot be written and
// the policy says the decision must fail closed.
var ErrUnavailable = errors.New("audit: access log cannot be written")

// Options configures a Sink.
type Options struct {
	Path         string        // file, "stdout", "stderr" or "syslog"
	Stream       string        // also copy every written record to "stdout", "stderr" or "syslog"; "" none
	MaxSize      int64         // rotate a file before it exceeds this many bytes; 0: never
	MaxAge       time.Duration // rotate a file older than this; 0: never
	SealKey      ed25519.PrivateKey
	SealEvery    int           // seal after this many records; 0: DefaultSealEvery
	SealInterval time.Duration // seal after this long with unsealed records; 0: DefaultSealInterval, <0: never
	OnWriteError WritePolicy   // "" = FailClosedIL3
	QueueSize    int           // records kept in memory while writes fail; 0: DefaultQueueSize
	Registerer   prometheus.Registerer
	Logger       *zap.Logger // operational errors (never the records)
	Now          func() time.Time
	// writer, when set, replaces the file/stream (tests).
	writer io.Writer
}

// Sink is the tamper-evident access log: a zap core that adds the hash
// chain to every record, writes it synchronously (so a record is on disk,
// or queued and counted, when the logger call returns), rotates files and
// seals the chain.
type Sink struct {
	opts   Options
	logger *zap.Logger
	enc    zapcore.Encoder
	log    *zap.Logger
	now    func() time.Time
	keyID  string

	mu         sync.Mutex
	w          io.Writer
	file       *os.File // nil for streams
	size       int64
	opened     time.Time
	seq        uint64
	head       string // hex SHA-256 of the last record encoded into the chain
	sealFirst  uint64
	unsealed   int
	queue      [][]byte
	lost       uint64 // not yet reported in the log
	lastErr    error
	dirtyTrunc bool // a partial write may be in the file: truncate to size first
	closed     bool

	stop chan struct{}
	done chan struct{}

	stream io.Writer // copy of each written record (best effort)

	mRecords, mErrors, mSeals, mLost, mRotations, mStreamErrors prometheus.Counter
	mQueued                                                     prometheus.GaugeFunc
}

// OpenSink opens the sink. For a file it continues the chain of the file
// (or of the newest rotated file when the file is empty or missing).
func OpenSink(opts Options) (*Sink, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.SealEvery <= 0 {
		opts.SealEvery = DefaultSealEvery
	}
	if opts.SealInterval == 0 {
		opts.SealInterval = DefaultSealInterval
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.OnWriteError == "" {
		opts.OnWriteError = FailClosedIL3
	}
	s := &Sink{opts: opts, logger: opts.Logger, now: opts.Now, head: GenesisHash,
		enc: zapcore.NewJSONEncoder(EncoderConfig()), stop: make(chan struct{}), done: make(chan struct{})}
	if opts.SealKey != nil {
		s.keyID = KeyID(opts.SealKey.Public().(ed25519.PublicKey))
	}
	switch {
	case opts.writer != nil:
		s.w = opts.writer
	case opts.Path == "":
		return nil, errors.New("audit: access log path is empty")
	case opts.Path == Stdout, opts.Path == Stderr, opts.Path == Syslog:
		w, err := openStream(opts.Path)
		if err != nil {
			return nil, err
		}
		s.w = w
	default:
		if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
			return nil, fmt.Errorf("audit: open access log: %w", err)
		}
		if err := s.resume(); err != nil {
			return nil, err
		}
		if err := s.openFile(); err != nil {
			return nil, err
		}
	}
	if opts.Stream != "" {
		w, err := openStream(opts.Stream)
		if err != nil {
			if s.file != nil {
				s.file.Close()
			}
			return nil, err
		}
		s.stream = w
	}
	s.sealFirst = s.seq + 1
	s.metrics(opts.Registerer)
	s.log = zap.New(&core{s: s, enc: s.enc},
		zap.ErrorOutput(zapcore.AddSync(io.Discard)), // the sink logs its own errors
		zap.WithClock(sinkClock{opts.Now}))
	if s.opts.SealKey != nil && s.opts.SealInterval > 0 {
		go s.ticker()
	} else {
		close(s.done)
	}
	return s, nil
}

// syslogDial connects to the local syslog daemon (tests replace it).
var syslogDial = func() (*syslog.Writer, error) { return syslog.New(syslog.LOG_INFO|syslog.LOG_AUTH, "nacd") }

// openStream opens "stdout", "stderr" or "syslog" (the local socket,
// facility auth, tag nacd).
func openStream(name string) (io.Writer, error) {
	switch name {
	case Stdout:
		return os.Stdout, nil
	case Stderr:
		return os.Stderr, nil
	case Syslog:
		w, err := syslogDial()
		if err != nil {
			return nil, fmt.Errorf("audit: syslog: %w", err)
		}
		return &syslogWriter{w}, nil
	}
	return nil, fmt.Errorf("audit: %q is not a stream (stdout, stderr or syslog)", name)
}

// syslogWriter sends one record per message, without the newline.
type syslogWriter struct{ w *syslog.Writer }

func (s *syslogWriter) Write(p []byte) (int, error) {
	if err := s.w.Info(string(bytes.TrimRight(p, "\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Sink) metrics(reg prometheus.Registerer) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	s.mRecords = c("nacd_audit_records_total", "Audit log records written (including seals).")
	s.mErrors = c("nacd_audit_write_errors_total", "Failed audit log writes (the record stays queued and is retried).")
	s.mSeals = c("nacd_audit_seals_total", "Signed seal records written to the audit log.")
	s.mLost = c("nacd_audit_records_lost_total", "Audit records dropped because the retry queue was full.")
	s.mRotations = c("nacd_audit_rotations_total", "Audit log file rotations.")
	s.mStreamErrors = c("nacd_audit_stream_errors_total", "Failed copies of audit records to log.access_log_stream (the file is not affected).")
	s.mQueued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nacd_audit_queued_records",
		Help: "Audit records waiting in memory for the log to become writable."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.queue))
	})
	if reg != nil {
		reg.MustRegister(s.mRecords, s.mErrors, s.mSeals, s.mLost, s.mRotations, s.mStreamErrors, s.mQueued)
	}
}

// Logger is the access logger: every entry becomes one chained record.
func (s *Sink) Logger() *zap.Logger { return s.log }

// KeyID is the identifier of a seal public key.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// SealMessage is what a seal's signature covers: the seal's own sequence
// number, its hash_prev (the chain head it seals), the first sequence
// number since the previous seal and the seal's time.
func SealMessage(seq uint64, hashPrev string, first uint64, at string) []byte {
	return []byte("nacd-audit-seal-v1\n" + strconv.FormatUint(seq, 10) + "\n" + hashPrev + "\n" + strconv.FormatUint(first, 10) + "\n" + at + "\n")
}

// Err reports whether the log is currently failing: records are waiting in
// memory (or were lost) because the last write failed. It first retries
// writing them.
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("audit: access log closed")
	}
	if len(s.queue) > 0 || s.lost > 0 {
		s.flushLocked()
	}
	if len(s.queue) > 0 || s.lost > 0 {
		return fmt.Errorf("%w: %d records queued, %d lost: %v", ErrUnavailable, len(s.queue), s.lost, s.lastErr)
	}
	return nil
}

// Gate is radius.Config.AuditGate: called after a decision's record was
// written, before the Access-Accept is sent. It returns an error when the
// record is not confirmed written and the write policy fails this decision
// closed.
func (s *Sink) Gate(d policy.Decision) error {
	err := s.Err()
	if err == nil {
		return nil
	}
	switch s.opts.OnWriteError {
	case KeepServing:
		return nil
	case FailClosedIL3:
		if d.Segment != policy.SegmentIL3 {
			return nil
		}
	}
	return err
}

// Policy is the configured write policy.
func (s *Sink) Policy() WritePolicy { return s.opts.OnWriteError }

// ticker seals on the interval.
func (s *Sink) ticker() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SealInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if !s.closed {
				if s.unsealed > 0 {
					s.sealLocked("interval")
				} else {
					// Retry queued records and age rotation even when idle.
					s.flushLocked()
				}
				if s.file != nil && s.opts.MaxAge > 0 && s.now().Sub(s.opened) >= s.opts.MaxAge && s.size > 0 && len(s.queue) == 0 {
					s.rotateLocked()
				}
			}
			s.mu.Unlock()
		}
	}
}

// Close seals the chain, writes what is queued if it can, and closes the
// file. Records still queued are counted as lost. Safe to call twice.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.unsealed > 0 {
		s.sealLocked("close")
	} else {
		s.flushLocked()
	}
	var err error
	if n := len(s.queue); n > 0 {
		s.mLost.Add(float64(n))
		s.logger.Error("audit: closing with records that could not be written", zap.Int("lost", n), zap.Error(s.lastErr))
		err = fmt.Errorf("audit: %d records could not be written: %w", n, s.lastErr)
		s.queue = nil
	}
	s.closed = true
	if s.file != nil {
		err = errors.Join(err, s.file.Sync(), s.file.Close())
		s.file = nil
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return err
}

// resume finds the chain head (last record) of the file or, when it has
// none, of the newest rotated file.
func (s *Sink) resume() error {
	cands := []string{s.opts.Path}
	if rot, err := RotatedFiles(s.opts.Path); err == nil {
		for i := len(rot) - 1; i >= 0; i-- {
			cands = append(cands, rot[i])
		}
	}
	for _, p := range cands {
		line, err := lastLine(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("audit: resume chain from %s: %w", p, err)
		}
		if line == nil {
			continue
		}
		rec, err := parseChain(line)
		if err != nil {
			if p != s.opts.Path || firstLineChained(p) {
				// A torn last record (a crash, power loss) or an edit: do
				// not guess; the operator verifies and moves it aside.
				return fmt.Errorf("audit: resume chain: the last line of %s is not a chained record (%v): run nacd audit verify on it and move it aside", p, err)
			}
			// A log written before the chain existed: keep it, aside.
			legacy := p + ".legacy-" + s.now().UTC().Format("20060102T150405Z")
			if err := os.Rename(p, legacy); err != nil {
				return fmt.Errorf("audit: move the unchained log aside: %w", err)
			}
			s.logger.Warn("audit: the access log was not hash-chained; moved aside, a new chain starts", zap.String("moved_to", legacy))
			continue
		}
		s.seq = rec.seq
		s.head = hashLine(line)
		return nil
	}
	return nil
}

// firstLineChained reports whether the file's first line is a chained
// record (the file was written by the sink, not before it existed).
func firstLineChained(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	line, _ := bufio.NewReaderSize(f, 64<<10).ReadSlice('\n')
	_, err = parseChain(bytes.TrimRight(line, "\n"))
	return err == nil
}

// RotatedFiles lists path's rotated files (path.<timestamp>), oldest first.
func RotatedFiles(path string) ([]string, error) {
	m, err := filepath.Glob(path + ".2*")
	if err != nil {
		return nil, err
	}
	sort.Strings(m)
	return m, nil
}

// lastLine returns the last complete-or-not line of the file (without its
// newline), nil for an empty file.
func lastLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	var buf []byte
	const chunk = 64 << 10
	for off := size; off > 0; {
		n := int64(chunk)
		if off < n {
			n = off
		}
		off -= n
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return nil, err
		}
		buf = append(b, buf...)
		t := bytes.TrimRight(buf, "\n")
		if i := bytes.LastIndexByte(t, '\n'); i >= 0 {
			return t[i+1:], nil
		}
		if off == 0 && len(t) > 0 {
			return t, nil
		}
		if len(buf) > 16<<20 {
			return nil, errors.New("last line longer than 16 MiB")
		}
	}
	return nil, nil
}

func hashLine(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

func (s *Sink) openFile() error {
	f, err := os.OpenFile(s.opts.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open access log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: open access log: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("audit: open access log: %s is not a regular file", s.opts.Path)
	}
	s.file, s.w, s.size, s.opened = f, f, st.Size(), s.now()
	return nil
}

// rotateLocked seals (when keyed) and renames the file to
// path.<UTC timestamp>, then opens a new one; the chain continues.
func (s *Sink) rotateLocked() {
	if s.file == nil {
		return
	}
	if s.unsealed > 0 && s.opts.SealKey != nil {
		s.appendLocked(s.sealRecordLocked("rotate"))
		s.flushLocked()
		if len(s.queue) > 0 {
			return // cannot seal: keep the file
		}
	}
	if err := s.file.Sync(); err != nil {
		s.logger.Error("audit: sync before rotation", zap.Error(err))
	}
	s.file.Close()
	s.file = nil
	name := s.opts.Path + "." + s.now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(s.opts.Path, name); err != nil {
		s.logger.Error("audit: rotate access log", zap.Error(err))
	} else {
		s.mRotations.Inc()
	}
	if err := s.openFile(); err != nil {
		s.lastErr = err
		s.logger.Error("audit: reopen access log after rotation", zap.Error(err))
		s.w = errWriter{err}
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// encodeLocked encodes one record with the chain fields and advances the
// chain head.
func (s *Sink) encodeLocked(ent zapcore.Entry, enc zapcore.Encoder, fields []zapcore.Field) ([]byte, error) {
	s.seq++
	fields = append(fields[:len(fields):len(fields)], zap.Uint64(FieldSequence, s.seq), zap.String(FieldHashPrev, s.head))
	buf, err := enc.EncodeEntry(ent, fields)
	if err != nil {
		s.seq--
		return nil, err
	}
	b := append([]byte(nil), buf.Bytes()...)
	buf.Free()
	s.head = hashLine(bytes.TrimRight(b, "\n"))
	return b, nil
}

// sealRecordLocked encodes a seal record covering the chain head.
func (s *Sink) sealRecordLocked(reason string) []byte {
	at := s.now().UTC()
	seq := s.seq + 1
	atStr := at.Format(TimeLayout)
	sig := ed25519.Sign(s.opts.SealKey, SealMessage(seq, s.head, s.sealFirst, atStr))
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: ActionSeal}
	b, err := s.encodeLocked(ent, s.enc, []zapcore.Field{
		zap.String("event.action", ActionSeal), zap.String("event.category", "audit"),
		zap.String(FieldSealReason, reason),
		zap.Uint64(FieldSealFirst, s.sealFirst), zap.Int(FieldSealRecords, s.unsealed),
		zap.String(FieldSealKeyID, s.keyID), zap.String(FieldSealSignature, base64.StdEncoding.EncodeToString(sig)),
	})
	if err != nil {
		return nil
	}
	s.sealFirst = seq + 1
	s.unsealed = 0
	s.mSeals.Inc()
	return b
}

func (s *Sink) sealLocked(reason string) {
	if s.opts.SealKey == nil {
		s.flushLocked()
		return
	}
	s.appendLocked(s.sealRecordLocked(reason))
}

// appendLocked queues rec behind what is waiting and writes the queue in
// order.
func (s *Sink) appendLocked(rec []byte) {
	if rec == nil {
		return
	}
	s.queue = append(s.queue, rec)
	s.flushLocked()
}

// flushLocked writes queued records in order, stopping at the first failure.
func (s *Sink) flushLocked() {
	for len(s.queue) > 0 {
		if !s.tryWrite(s.queue[0]) {
			return
		}
		s.queue[0] = nil
		s.queue = s.queue[1:]
	}
	if s.lost > 0 {
		// Writable again: say in the chain how many records were lost.
		n := s.lost
		ent := zapcore.Entry{Level: zapcore.ErrorLevel, Time: s.now(), Message: ActionLost}
		b, err := s.encodeLocked(ent, s.enc, []zapcore.Field{zap.String("event.action", ActionLost), zap.String("event.category", "audit"),
			zap.String("event.outcome", "failure"), zap.Uint64("nacd.audit.lost_records", n)})
		if err != nil {
			return
		}
		s.lost = 0
		s.unsealed++
		if !s.tryWrite(b) {
			s.queue = append(s.queue, b)
			return
		}
	}
	s.lastErr = nil
}

// tryWrite writes one record (nil: only undo a partial write). A failed
// write is undone by truncating the file to its last good size.
func (s *Sink) tryWrite(rec []byte) bool {
	if s.dirtyTrunc && s.file != nil {
		if err := s.file.Truncate(s.size); err != nil {
			s.fail(err)
			return false
		}
		s.dirtyTrunc = false
	}
	if rec == nil {
		return true
	}
	n, err := s.w.Write(rec)
	if err != nil {
		if n > 0 && s.file != nil {
			s.dirtyTrunc = true
			if terr := s.file.Truncate(s.size); terr == nil {
				s.dirtyTrunc = false
			}
		}
		s.fail(err)
		return false
	}
	s.size += int64(n)
	s.mRecords.Inc()
	if s.stream != nil {
		// A copy for a SIEM: best effort, never gates the file.
		if _, err := s.stream.Write(rec); err != nil {
			s.mStreamErrors.Inc()
		}
	}
	return true
}

func (s *Sink) fail(err error) {
	s.mErrors.Inc()
	if s.lastErr == nil {
		s.logger.Error("audit: cannot write the access log; records are queued in memory",
			zap.String("path", s.opts.Path), zap.String("policy", string(s.opts.OnWriteError)), zap.Error(err))
	}
	s.lastErr = err
}

// writeEntry is the core's Write.
func (s *Sink) writeEntry(ent zapcore.Entry, enc zapcore.Encoder, fields []zapcore.Field) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("audit: write after close")
	}
	if s.file != nil && s.opts.MaxAge > 0 && s.size > 0 && len(s.queue) == 0 && s.now().Sub(s.opened) >= s.opts.MaxAge {
		s.rotateLocked()
	}
	if len(s.queue) >= s.opts.QueueSize {
		s.flushLocked()
		if len(s.queue) >= s.opts.QueueSize {
			s.lost++
			s.mLost.Inc()
			s.logger.Error("audit: record lost (the log cannot be written and the queue is full)",
				zap.String("event.action", fieldString(fields, "event.action")), zap.String("msg", ent.Message), zap.Int("queued", len(s.queue)))
			return ErrUnavailable
		}
	}
	b, err := s.encodeLocked(ent, enc, fields)
	if err != nil {
		return err
	}
	s.unsealed++
	s.appendLocked(b)
	if s.opts.SealKey != nil && s.unsealed >= s.opts.SealEvery {
		s.sealLocked("count")
	}
	if s.file != nil && s.opts.MaxSize > 0 && s.size >= s.opts.MaxSize && len(s.queue) == 0 {
		s.rotateLocked()
	}
	if len(s.queue) > 0 {
		return fmt.Errorf("%w: %v", ErrUnavailable, s.lastErr)
	}
	return nil
}

func fieldString(fs []zapcore.Field, key string) string {
	for _, f := range fs {
		if f.Key == key && f.Type == zapcore.StringType {
			return f.String
		}
	}
	return ""
}

// core is the zapcore.Core of the access logger.
type core struct {
	s   *Sink
	enc zapcore.Encoder // with the With() fields
}

func (c *core) Enabled(zapcore.Level) bool { return true }

func (c *core) With(fs []zapcore.Field) zapcore.Core {
	enc := c.enc.Clone()
	for _, f := range fs {
		f.AddTo(enc)
	}
	return &core{s: c.s, enc: enc}
}

func (c *core) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(ent, c)
}

func (c *core) Write(ent zapcore.Entry, fs []zapcore.Field) error {
	return c.s.writeEntry(ent, c.enc, fs)
}

func (c *core) Sync() error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.file != nil {
		return c.s.file.Sync()
	}
	return nil
}

// sinkClock gives records the sink's clock.
type sinkClock struct{ now func() time.Time }

func (c sinkClock) Now() time.Time                         { return c.now() }
func (c sinkClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }
