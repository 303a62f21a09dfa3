package radius

import (
	"crypto/tls"
	"time"

	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Access log field names: one line per decision (accept, or reject of a
// completed EAP conversation or of a non-EAP request). They follow the
// Elastic Common Schema where it has a field for the fact (tls.*, user.*,
// device.*, network.*, rule.*, event.*) and use nas.*, radius.*, eap.* and
// nacd.* otherwise. They are stable: dashboards and the audit trail key on
// them. Never add keys, MSKs or secrets.
//
//	event.action          "radius-access" (constant)
//	event.outcome         "success" (accept) | "failure" (reject)
//	event.start           time the conversation (or request) started
//	event.duration        nanoseconds from event.start to the decision (ECS unit)
//	nacd.duration_ms      the same in milliseconds
//	nacd.result           accept | reject
//	nacd.segment          il3 | general | guest | onboarding | reject
//	network.vlan.id       VLAN of the segment (accept only)
//	rule.name             rule that decided (or a built-in name)
//	event.reason          reason code (policy.Reason or a radius Reason*)
//	nacd.session_id       the Class attribute sent on Accept (accounting link)
//	nas.name, nas.ip, nas.site
//	radius.user_name, radius.calling_station_id, radius.called_station_id
//	network.ssid          from Called-Station-Id ("MAC:SSID"), case preserved
//	eap.identity          EAP-Response/Identity
//	user.email            SAN rfc822Name
//	device.id             SAN urn:uuid
//	tls.version           "1.2" | "1.3"
//	tls.client.x509.subject.distinguished_name
//	tls.client.x509.issuer.distinguished_name
//	tls.client.x509.serial_number
//	nacd.anchor           trust anchor the chain verified to
//	nacd.cert_status      verifier's status (ok, revoked, expired, ...)
//	nacd.tls_alert        the TLS alert that ended the handshake, if any
//	nacd.revocation.source, nacd.revocation.age_s
const (
	FieldAction           = "event.action"
	FieldOutcome          = "event.outcome"
	FieldStart            = "event.start"
	FieldDuration         = "event.duration"
	FieldDurationMS       = "nacd.duration_ms"
	FieldResult           = "nacd.result"
	FieldSegment          = "nacd.segment"
	FieldVLAN             = "network.vlan.id"
	FieldRule             = "rule.name"
	FieldReason           = "event.reason"
	FieldSessionID        = "nacd.session_id"
	FieldNASName          = "nas.name"
	FieldNASIP            = "nas.ip"
	FieldSite             = "nas.site"
	FieldUserName         = "radius.user_name"
	FieldCallingStationID = "radius.calling_station_id"
	FieldCalledStationID  = "radius.called_station_id"
	FieldSSID             = "network.ssid"
	FieldEAPIdentity      = "eap.identity"
	FieldEmail            = "user.email"
	FieldDeviceUUID       = "device.id"
	FieldTLSVersion       = "tls.version"
	FieldSubject          = "tls.client.x509.subject.distinguished_name"
	FieldIssuer           = "tls.client.x509.issuer.distinguished_name"
	FieldSerial           = "tls.client.x509.serial_number"
	FieldAnchor           = "nacd.anchor"
	FieldCertStatus       = "nacd.cert_status"
	FieldTLSAlert         = "nacd.tls_alert"
	FieldRevocationSource = "nacd.revocation.source"
	FieldRevocationAge    = "nacd.revocation.age_s"
)

// Result values.
const (
	ResultAccept = "accept"
	ResultReject = "reject"
)

// Reason is a reject reason decided by the RADIUS layer itself, before or
// around policy (policy decisions carry a policy.Reason).
type Reason string

const (
	ReasonNoEAP            Reason = "no-eap"                // Access-Request without EAP-Message (PAP, CHAP...)
	ReasonEAPMalformed     Reason = "eap-malformed"         // EAP-Message does not parse (length lies...)
	ReasonEAPUnexpected    Reason = "eap-unexpected"        // not a Response/Identity where one was due
	ReasonUnknownState     Reason = "unknown-state"         // State unknown, expired or evicted
	ReasonEAPNak           Reason = "eap-nak"               // peer refused EAP-TLS
	ReasonEAPProtocol      Reason = "eap-protocol"          // EAP-TLS protocol violation
	ReasonEAPTooLarge      Reason = "eap-too-large"         // TLS message over the configured cap
	ReasonTLSHandshake     Reason = "tls-handshake-failed"  // handshake failed before a policy decision
	ReasonInternal         Reason = "internal-error"        // nacd failed; fail closed
	ReasonAuditUnavailable Reason = "audit-log-unavailable" // the access log cannot be written (log.on_write_error)
)

// accessRecord is what one access log line says.
type accessRecord struct {
	start      time.Time
	client     *Client
	nasIP      string
	userName   string
	calling    string
	called     string
	ssid       string
	eapID      string
	identity   *policy.Identity // nil: no certificate was verified
	tlsVersion uint16
	result     string
	segment    policy.Segment
	vlan       int
	rule       string
	reason     string
	tlsAlert   string
	sessionID  string
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	case 0:
		return "unknown"
	default:
		return "other"
	}
}

func (r *accessRecord) fields(now time.Time) []zap.Field {
	d := now.Sub(r.start)
	outcome := "failure"
	if r.result == ResultAccept {
		outcome = "success"
	}
	// Sized exactly (a zap.Field is 64 bytes): the slice is the line's
	// main allocation.
	n := 17
	if r.result == ResultAccept {
		n += 2
	}
	if r.tlsVersion != 0 {
		n++
	}
	if r.tlsAlert != "" {
		n++
	}
	if id := r.identity; id != nil {
		n += 7
		if id.Revocation.Checked || id.Revocation.Source != "" {
			n += 2
		}
	}
	f := make([]zap.Field, 0, n)
	f = append(f,
		zap.String(FieldAction, "radius-access"),
		zap.String(FieldOutcome, outcome),
		zap.String(FieldResult, r.result),
		zap.Time(FieldStart, r.start),
		zap.Int64(FieldDuration, d.Nanoseconds()),
		zap.Int64(FieldDurationMS, d.Milliseconds()),
		zap.String(FieldSegment, string(r.segment)),
		zap.String(FieldRule, r.rule),
		zap.String(FieldReason, r.reason),
		zap.String(FieldNASName, r.client.Name),
		zap.String(FieldNASIP, r.nasIP),
		zap.String(FieldSite, r.client.Site),
		zap.String(FieldUserName, r.userName),
		zap.String(FieldCallingStationID, r.calling),
		zap.String(FieldCalledStationID, r.called),
		zap.String(FieldSSID, r.ssid),
		zap.String(FieldEAPIdentity, r.eapID),
	)
	if r.result == ResultAccept {
		f = append(f, zap.Int(FieldVLAN, r.vlan), zap.String(FieldSessionID, r.sessionID))
	}
	if r.tlsVersion != 0 {
		f = append(f, zap.String(FieldTLSVersion, tlsVersionName(r.tlsVersion)))
	}
	if r.tlsAlert != "" {
		f = append(f, zap.String(FieldTLSAlert, r.tlsAlert))
	}
	if id := r.identity; id != nil {
		f = append(f,
			zap.String(FieldSubject, id.Subject),
			zap.String(FieldEmail, id.Email),
			zap.String(FieldDeviceUUID, id.DeviceUUID),
			zap.String(FieldSerial, id.Serial),
			zap.String(FieldIssuer, id.Issuer),
			zap.String(FieldAnchor, id.Anchor),
			zap.String(FieldCertStatus, string(id.Status)),
		)
		if id.Revocation.Checked || id.Revocation.Source != "" {
			f = append(f,
				zap.String(FieldRevocationSource, id.Revocation.Source),
				zap.Float64(FieldRevocationAge, id.Revocation.Age.Seconds()),
			)
		}
	}
	return f
}
