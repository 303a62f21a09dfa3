// Package audit owns nacd's access log: one JSON line per authentication
// decision, for the security group and auditors.
//
// For now it is the sink only (Open); a later issue adds a hash chain so an
// auditor can verify the log has not been altered.
//
// audit must never write shared secrets, keys or MSKs (callers log
// identities and decisions only), and never samples or drops a line.
package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
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

// Open returns the access logger writing to path: "stdout", "stderr", or a
// file (created 0600 if missing, appended to; its directory is created
// 0700). Every entry is written (no sampling, every level). Closing the
// returned Closer syncs the log and closes the file; it is safe to call more
// than once.
func Open(path string) (*zap.Logger, io.Closer, error) {
	var ws zapcore.WriteSyncer
	var file io.Closer
	switch path {
	case "":
		return nil, nil, errors.New("audit: access log path is empty")
	case Stdout:
		ws = zapcore.Lock(os.Stdout)
	case Stderr:
		ws = zapcore.Lock(os.Stderr)
	default:
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, fmt.Errorf("audit: open access log: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("audit: open access log: %w", err)
		}
		file = f
		ws = zapcore.Lock(f)
	}
	return New(ws, file)
}

// New returns an access logger writing to w; closer, if not nil, is closed
// by the returned Closer after the final Sync.
func New(w zapcore.WriteSyncer, closer io.Closer) (*zap.Logger, io.Closer, error) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), w, zapcore.DebugLevel)
	logger := zap.New(core) // no sampling, no caller, no stack traces
	return logger, &sink{logger: logger, closer: closer}, nil
}

type sink struct {
	once   sync.Once
	logger *zap.Logger
	closer io.Closer
	err    error
}

func (s *sink) Close() error {
	s.once.Do(func() {
		err := s.logger.Sync()
		if s.closer == nil {
			// Standard streams: syncing a terminal or pipe fails with
			// EINVAL, which loses nothing.
			s.err = nil
			return
		}
		s.err = errors.Join(err, s.closer.Close())
	})
	return s.err
}
