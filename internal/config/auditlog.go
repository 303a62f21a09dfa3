package config

import (
	"strconv"
	"strings"
	"time"
)

// Audit log defaults (log.*).
const (
	DefaultOnWriteError      = "fail_closed_il3"
	DefaultAuditSealEvery    = 1000
	DefaultAuditSealInterval = 5 * time.Minute
)

// validateAuditLog reads the audit-log keys of log: access_log_max_size
// (bytes, or with a KiB/MiB/GiB suffix), access_log_max_age (a duration),
// on_write_error, audit_seal_every, audit_seal_interval, access_log_stream.
func validateAuditLog(ps *problems, raw *rawLog, l *Log) {
	if raw.AccessLogMaxSize != "" {
		n, ok := parseSize(raw.AccessLogMaxSize)
		if !ok || n < 4096 {
			ps.add("log.access_log_max_size", "%q is not a size of at least 4096 bytes (write e.g. \"100MiB\")", raw.AccessLogMaxSize)
		}
		l.AccessLogMaxSize = n
	}
	l.AccessLogMaxAge = duration(ps, "log.access_log_max_age", raw.AccessLogMaxAge, 0, 0)
	switch raw.OnWriteError {
	case "":
		l.OnWriteError = DefaultOnWriteError
	case "fail_closed_il3", "fail_closed", "keep_serving":
		l.OnWriteError = raw.OnWriteError
	default:
		ps.add("log.on_write_error", "%q is not a policy (want fail_closed_il3, fail_closed or keep_serving)", raw.OnWriteError)
	}
	l.AuditSealEvery = intField(ps, "log.audit_seal_every", raw.AuditSealEvery, DefaultAuditSealEvery, 1, 1<<30)
	l.AuditSealInterval = duration(ps, "log.audit_seal_interval", raw.AuditSealInterval, DefaultAuditSealInterval, time.Second)
	switch raw.AccessLogStream {
	case "":
	case "stdout", "stderr", "syslog":
		if raw.AccessLogStream == l.AccessLog {
			ps.add("log.access_log_stream", "%q is already log.access_log", raw.AccessLogStream)
		}
		l.AccessLogStream = raw.AccessLogStream
	default:
		ps.add("log.access_log_stream", "%q is not a stream (want stdout, stderr or syslog)", raw.AccessLogStream)
	}
	if (l.AccessLogMaxSize > 0 || l.AccessLogMaxAge > 0) && isStream(l.AccessLog) {
		ps.add("log.access_log_max_size", "rotation needs log.access_log to be a file, not %q", l.AccessLog)
	}
}

func isStream(p string) bool { return p == "stdout" || p == "stderr" || p == "syslog" }

func parseSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			mult, s = u.m, strings.TrimSpace(strings.TrimSuffix(s, u.suf))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, false
	}
	return n * mult, true
}
