// Package audit owns nacd's access log: one JSON line per authentication
// decision, for the security group and auditors.
//
// Every record carries event.sequence and hash_prev (the SHA-256 of the
// previous record's line), files rotate with the chain carried across, and
// seal records signed with an Ed25519 key cover the chain head; Verify and
// Query are what `nacd audit verify|query` run. docs/audit-log.md is the
// schema.
//
// audit must never write shared secrets, keys or MSKs (callers log
// identities and decisions only), and never samples or drops a line.
package audit

import (
	"errors"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Stdout and Stderr are the access-log "paths" that write to the process's
// standard streams instead of a file.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// TimeLayout is the access log's time format: ISO 8601 in UTC with
// milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// EncoderConfig is the access log's JSON encoding: "time" (ISO 8601 UTC),
// "level", "msg", then the caller's fields; no caller, no stack traces.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:        "time",
		LevelKey:       "level",
		MessageKey:     "msg",
		NameKey:        "logger",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     encodeTimeUTC,
		EncodeDuration: zapcore.MillisDurationEncoder,
	}
}

func encodeTimeUTC(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format(TimeLayout))
}

// Open returns the access logger writing to path: "stdout", "stderr",
// "syslog", or a file (created 0600 if missing, appended to, continuing its
// hash chain; its directory is created 0700). Every entry is one chained
// record (no sampling, every level); no seals, no rotation (OpenSink does
// both). Closing the returned Closer syncs the log and closes the file; it
// is safe to call more than once.
func Open(path string) (*zap.Logger, io.Closer, error) {
	s, err := OpenSink(Options{Path: path})
	if err != nil {
		return nil, nil, err
	}
	return s.Logger(), s, nil
}

// New returns an access logger writing chained records to w (tests and
// streams); closer, if not nil, is closed by the returned Closer.
func New(w io.Writer, closer io.Closer) (*zap.Logger, io.Closer, error) {
	s, err := OpenSink(Options{writer: w})
	if err != nil {
		return nil, nil, err
	}
	return s.Logger(), closerFunc(func() error {
		err := s.Close()
		if closer != nil {
			err = errors.Join(err, closer.Close())
		}
		return err
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
