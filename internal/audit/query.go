package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"
)

// Query selects records: every set criterion must match. Matching is
// exact (Serial is compared in lower-case hex without colons).
type Query struct {
	Holder string    // user.email (RADIUS) or holder.email (PKI)
	Device string    // device.id (RADIUS) or device.uuid (PKI)
	Serial string    // tls.client.x509.serial_number or certificate.serial
	NAS    string    // nas.name or nas.ip
	Since  time.Time // time >= Since
	Until  time.Time // time < Until
	Result string    // accept | reject (nacd.result; event.outcome success/failure for other records)
}

// Record is the part of a record that query prints in table and CSV form.
type Record struct {
	Time       string `json:"time"`
	Seq        uint64 `json:"event.sequence"`
	Msg        string `json:"msg"`
	Action     string `json:"event.action"`
	Outcome    string `json:"event.outcome"`
	Result     string `json:"nacd.result"`
	Segment    string `json:"nacd.segment"`
	VLAN       *int   `json:"network.vlan.id"`
	Reason     string `json:"event.reason"`
	NASName    string `json:"nas.name"`
	NASIP      string `json:"nas.ip"`
	Site       string `json:"nas.site"`
	Email      string `json:"user.email"`
	Holder     string `json:"holder.email"`
	DeviceID   string `json:"device.id"`
	DeviceUUID string `json:"device.uuid"`
	TLSSerial  string `json:"tls.client.x509.serial_number"`
	CertSerial string `json:"certificate.serial"`
	Calling    string `json:"radius.calling_station_id"`
	SessionID  string `json:"nacd.session_id"`
}

// HolderEmail is user.email or holder.email.
func (r *Record) HolderEmail() string { return first(r.Email, r.Holder) }

// Device is device.id or device.uuid.
func (r *Record) Device() string { return first(r.DeviceID, r.DeviceUUID) }

// Serial is the certificate serial of the record.
func (r *Record) Serial() string { return first(r.TLSSerial, r.CertSerial) }

// ResultName is accept/reject for decisions, else the outcome mapped.
func (r *Record) ResultName() string {
	if r.Result != "" {
		return r.Result
	}
	switch r.Outcome {
	case "success":
		return "accept"
	case "failure":
		return "reject"
	}
	return ""
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// NormalizeSerial lower-cases a hex serial and drops colons.
func NormalizeSerial(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, ":", ""))
}

// needles are byte strings a matching line must contain (a cheap filter
// before decoding JSON).
func (q *Query) needles() [][]byte {
	var n [][]byte
	for _, v := range []string{q.Holder, q.Device, NormalizeSerial(q.Serial), q.NAS} {
		if v == "" || strings.ContainsAny(v, "\"\\<>&") || !isPrintableASCII(v) {
			continue
		}
		n = append(n, []byte(`"`+v+`"`))
	}
	return n
}

func (q *Query) match(r *Record) bool {
	if q.Holder != "" && r.HolderEmail() != q.Holder {
		return false
	}
	if q.Device != "" && r.Device() != q.Device {
		return false
	}
	if q.Serial != "" && NormalizeSerial(r.Serial()) != NormalizeSerial(q.Serial) {
		return false
	}
	if q.NAS != "" && r.NASName != q.NAS && r.NASIP != q.NAS {
		return false
	}
	if q.Result != "" && r.ResultName() != q.Result {
		return false
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		t, err := time.Parse(TimeLayout, r.Time)
		if err != nil {
			return false
		}
		if !q.Since.IsZero() && t.Before(q.Since) {
			return false
		}
		if !q.Until.IsZero() && !t.Before(q.Until) {
			return false
		}
	}
	return true
}

// Run streams r (one file) and calls fn for every matching record with
// its line (without the newline; valid only during the call). A line that
// is not JSON is skipped (audit verify reports it). fn returning an error
// stops the scan.
func (q *Query) Run(r io.Reader, fn func(line []byte, rec *Record) error) error {
	needles := q.needles()
	// Times in the fixed TimeLayout (UTC) compare as strings.
	var since, until string
	if !q.Since.IsZero() {
		since = q.Since.UTC().Format(TimeLayout)
	}
	if !q.Until.IsZero() {
		until = q.Until.UTC().Format(TimeLayout)
	}
	var resultNeedles [][]byte
	switch q.Result {
	case "reject":
		resultNeedles = [][]byte{[]byte(`"nacd.result":"reject"`), []byte(`"event.outcome":"failure"`)}
	case "accept":
		resultNeedles = [][]byte{[]byte(`"nacd.result":"accept"`), []byte(`"event.outcome":"success"`)}
	}
	var ferr error
	err := forEachLine(r, func(line []byte) bool {
		for _, n := range needles {
			if !bytes.Contains(line, n) {
				return true
			}
		}
		if resultNeedles != nil && !bytes.Contains(line, resultNeedles[0]) && !bytes.Contains(line, resultNeedles[1]) {
			return true
		}
		if since != "" || until != "" {
			if t, ok := lineTime(line); ok && ((since != "" && t < since) || (until != "" && t >= until)) {
				return true
			}
		}
		var rec Record
		if json.Unmarshal(line, &rec) != nil {
			return true
		}
		if !q.match(&rec) {
			return true
		}
		if ferr = fn(line, &rec); ferr != nil {
			return false
		}
		return true
	})
	if ferr != nil {
		return ferr
	}
	return err
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// lineTime is the "time" value of a record as written by the sink, without
// decoding the line.
func lineTime(line []byte) (string, bool) {
	const key = `"time":"`
	const n = len("2006-01-02T15:04:05.000Z") // TimeLayout in UTC
	i := bytes.Index(line, []byte(key))
	if i < 0 || len(line) < i+len(key)+n+1 {
		return "", false
	}
	t := line[i+len(key) : i+len(key)+n]
	if t[n-1] != 'Z' || line[i+len(key)+n] != '"' {
		return "", false
	}
	return string(t), true
}
