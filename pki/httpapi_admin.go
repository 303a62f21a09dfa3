package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// admin authenticates an admin request: a bearer token equal to the
// admin token file's, or a verified client certificate of this CA that is
// not revoked and whose CN or URI SAN is in AdminSubjects. The handler gets
// who did it ("admin-token@<addr>" or "admin-cert:<cn>/<serial>").
func (a *API) admin(h func(w http.ResponseWriter, r *http.Request, who string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, code, reason := a.authAdmin(r)
		if code != 0 {
			a.audit.Warn("admin-refused", zap.String("event.action", "admin-refused"), zap.String("event.category", "pki"),
				zap.String("event.outcome", "failure"), zap.String("url.path", r.URL.Path),
				zap.String("source.address", remote(r)), zap.String("event.reason", reason), zap.String("user.name", who))
			ec := "unauthorized"
			if code == http.StatusForbidden {
				ec = "forbidden"
			}
			writeError(w, code, ec, reason)
			return
		}
		h(w, r, who)
	}
}

func (a *API) authAdmin(r *http.Request) (who string, code int, reason string) {
	if tok, ok := bearer(r); ok {
		if a.adminSum == nil {
			return "", http.StatusUnauthorized, "bearer authentication is disabled"
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], a.adminSum) != 1 {
			return "", http.StatusUnauthorized, "wrong admin token"
		}
		return "admin-token@" + remote(r), 0, ""
	}
	leaf := clientCert(r)
	if leaf == nil {
		return "", http.StatusUnauthorized, "an admin client certificate or the admin bearer token is required"
	}
	who = "admin-cert:" + leaf.Subject.CommonName + "/" + hexSerial(leaf)
	match := a.admins[strings.ToLower(leaf.Subject.CommonName)] && leaf.Subject.CommonName != ""
	for _, u := range leaf.URIs {
		match = match || a.admins[strings.ToLower(u.String())]
	}
	if !match {
		return who, http.StatusForbidden, "the client certificate is not an admin's"
	}
	rec, err := a.cfg.CA.Status(r.Context(), leaf.SerialNumber)
	switch {
	case errors.Is(err, ErrNotFound):
		return who, http.StatusForbidden, "the admin certificate is not in this CA's inventory"
	case err != nil:
		return who, http.StatusServiceUnavailable, "admin certificate status unknown"
	case rec.Status == StatusRevoked:
		return who, http.StatusForbidden, "the admin certificate is revoked"
	}
	return who, 0, ""
}

// InviteRequest is the JSON body of POST /v1/admin/tokens.
type InviteRequest struct {
	Email        string `json:"email"`
	Role         string `json:"role"`
	Ownership    string `json:"ownership"`
	ClearanceIL3 bool   `json:"clearance_il3,omitempty"`
	DeviceName   string `json:"device_name,omitempty"`
	Valid        string `json:"valid,omitempty"` // Go duration, e.g. "72h"
	Mail         bool   `json:"mail,omitempty"`  // e-mail it through the server's SMTP settings
}

// InviteResponse is the answer of POST /v1/admin/tokens: the token is
// shown this once.
type InviteResponse struct {
	Invitation
	Email        string           `json:"email"`
	DeviceUUID   string           `json:"device_uuid"`
	DeviceName   string           `json:"device_name,omitempty"`
	Ownership    policy.Ownership `json:"ownership"`
	Role         policy.Role      `json:"role"`
	ClearanceIL3 bool             `json:"clearance_il3"`
}

// NewInviteResponse is inv with its facts spelled out.
func NewInviteResponse(inv Invitation) InviteResponse {
	f := inv.Facts
	return InviteResponse{Invitation: inv, Email: f.Email, DeviceUUID: f.DeviceUUID, DeviceName: f.DeviceName,
		Ownership: f.Ownership, Role: f.Role, ClearanceIL3: f.ClearanceIL3}
}

// FactsOf returns the facts of a decoded response.
func (r InviteResponse) FactsOf() Facts {
	return Facts{Email: r.Email, DeviceUUID: r.DeviceUUID, DeviceName: r.DeviceName, Ownership: r.Ownership,
		Role: r.Role, ClearanceIL3: r.ClearanceIL3}
}

func (a *API) handleAdminToken(w http.ResponseWriter, r *http.Request, who string) {
	if a.cfg.Enroller == nil {
		writeError(w, http.StatusNotFound, "not_found", "enrolment is not enabled")
		return
	}
	body, ok := a.readBody(w, r, a.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	var req InviteRequest
	if err := strictJSON(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return
	}
	var valid time.Duration
	if req.Valid != "" {
		d, err := time.ParseDuration(req.Valid)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "valid: "+err.Error())
			return
		}
		valid = d
	}
	inv, err := a.cfg.Enroller.Invite(r.Context(), Invite{
		Email: req.Email, Role: policy.Role(req.Role), Ownership: policy.Ownership(req.Ownership),
		ClearanceIL3: req.ClearanceIL3, DeviceName: req.DeviceName, Valid: valid, By: who, Mail: req.Mail,
	})
	if err != nil && inv.Token == "" {
		a.writeErr(w, r, err)
		return
	}
	// A token created but not mailed is still returned (the operator can
	// hand it over); the mail error is logged by the enroller.
	writeJSON(w, http.StatusCreated, NewInviteResponse(inv))
}

// IssueRequest is the JSON body of POST /v1/admin/issue.
type IssueRequest struct {
	Email        string `json:"email"`
	Role         string `json:"role"`
	Ownership    string `json:"ownership"`
	ClearanceIL3 bool   `json:"clearance_il3,omitempty"`
	DeviceName   string `json:"device_name,omitempty"`
	DeviceUUID   string `json:"device_uuid,omitempty"`
	Validity     string `json:"validity,omitempty"` // Go duration; "" = the CA's default
	CSR          string `json:"csr"`                // PEM
}

// IssueResponse is the answer of POST /v1/admin/issue.
type IssueResponse struct {
	Serial     string    `json:"serial"`
	DeviceUUID string    `json:"device_uuid"`
	NotAfter   time.Time `json:"not_after"`
	Chain      string    `json:"chain"` // PEM, leaf then intermediate
}

func (a *API) handleAdminIssue(w http.ResponseWriter, r *http.Request, who string) {
	body, ok := a.readBody(w, r, a.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	var req IssueRequest
	if err := strictJSON(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return
	}
	f := Facts{Email: req.Email, DeviceUUID: strings.ToLower(req.DeviceUUID), DeviceName: req.DeviceName,
		Ownership: policy.Ownership(req.Ownership), Role: policy.Role(req.Role), ClearanceIL3: req.ClearanceIL3}
	err := ValidateInvite(Invite{Email: f.Email, Role: f.Role, Ownership: f.Ownership, ClearanceIL3: f.ClearanceIL3, DeviceName: f.DeviceName})
	if err == nil && req.Validity != "" {
		f.Validity, err = time.ParseDuration(req.Validity)
		if err == nil && f.Validity <= 0 {
			err = fmt.Errorf("%w: validity must be positive", ErrBadFacts)
		} else if err != nil {
			err = fmt.Errorf("%w: validity: %v", ErrBadFacts, err)
		}
	}
	if err == nil && f.DeviceUUID != "" && !isCanonicalUUID(f.DeviceUUID) {
		err = fmt.Errorf("%w: device UUID %q", ErrBadFacts, req.DeviceUUID)
	}
	if err != nil {
		a.adminAudit("issue", who, r, zap.String("holder.email", req.Email), zap.String("event.outcome", "failure"),
			zap.String("event.reason", RejectReason(err)), zap.String("error.message", err.Error()))
		a.writeErr(w, r, err)
		return
	}
	csr, err := ParseCSR([]byte(req.CSR))
	if err == nil {
		err = CheckCSR(csr, f)
	}
	var out IssueResponse
	if err == nil {
		certs, e := a.cfg.CA.Issue(r.Context(), csr, f, "admin-api:"+who)
		if err = e; err == nil {
			out = IssueResponse{Serial: hexSerial(certs[0]), NotAfter: certs[0].NotAfter, Chain: string(chainPEM(certs))}
			for _, u := range certs[0].URIs {
				if s, ok := strings.CutPrefix(u.String(), "urn:uuid:"); ok {
					out.DeviceUUID = s
				}
			}
		}
	}
	if err != nil {
		a.adminAudit("issue", who, r, zap.String("holder.email", req.Email), zap.String("event.outcome", "failure"),
			zap.String("event.reason", RejectReason(err)), zap.String("error.message", err.Error()))
		a.writeErr(w, r, err)
		return
	}
	a.adminAudit("issue", who, r, zap.String("holder.email", req.Email), zap.String("device.uuid", out.DeviceUUID),
		zap.String("certificate.serial", out.Serial), zap.String("event.outcome", "success"))
	writeJSON(w, http.StatusCreated, out)
}

// RevokeRequest is the JSON body of POST /v1/admin/revoke: exactly one of
// serial, device, holder.
type RevokeRequest struct {
	Serial string `json:"serial,omitempty"`
	Device string `json:"device,omitempty"`
	Holder string `json:"holder,omitempty"`
	Reason string `json:"reason"` // RFC 5280 name or number
}

// RevokeResponse lists the serials revoked.
type RevokeResponse struct {
	Revoked []string `json:"revoked"`
}

func (a *API) handleAdminRevoke(w http.ResponseWriter, r *http.Request, who string) {
	body, ok := a.readBody(w, r, a.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	var req RevokeRequest
	if err := strictJSON(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return
	}
	n := 0
	for _, s := range []string{req.Serial, req.Device, req.Holder} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		writeError(w, http.StatusBadRequest, "bad_request", "give exactly one of serial, device, holder")
		return
	}
	reason := ReasonUnspecified
	if req.Reason != "" {
		rr, err := ParseRevocationReason(req.Reason)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "reason: "+err.Error())
			return
		}
		reason = rr
	}
	by := "admin-api:" + who
	var (
		revoked []string
		err     error
		target  zap.Field
	)
	switch {
	case req.Serial != "":
		target = zap.String("certificate.serial", req.Serial)
		if _, ok := serialOf(req.Serial); !ok {
			writeError(w, http.StatusBadRequest, "bad_request", "serial: want hex")
			return
		}
		err = a.cfg.CA.Revoke(r.Context(), req.Serial, reason, by)
		if err == nil {
			s, _ := serialOf(req.Serial)
			revoked = []string{s.Text(16)}
		}
	case req.Device != "":
		target = zap.String("device.uuid", req.Device)
		revoked, err = a.cfg.CA.RevokeDevice(r.Context(), strings.ToLower(req.Device), reason, by)
	default:
		target = zap.String("holder.email", req.Holder)
		revoked, err = a.cfg.CA.RevokeHolder(r.Context(), req.Holder, reason, by)
	}
	if err != nil {
		a.adminAudit("revoke", who, r, target, zap.Int("revocation.reason_code", int(reason)), zap.String("event.outcome", "failure"),
			zap.String("error.message", err.Error()))
		a.writeErr(w, r, err)
		return
	}
	if revoked == nil {
		revoked = []string{}
	}
	a.adminAudit("revoke", who, r, target, zap.Int("revocation.reason_code", int(reason)), zap.Strings("certificate.serials", revoked),
		zap.String("event.outcome", "success"))
	writeJSON(w, http.StatusOK, RevokeResponse{Revoked: revoked})
}

// ListResponse is the answer of GET /v1/admin/certificates (records
// without the certificate DER).
type ListResponse struct {
	Certificates []Record `json:"certificates"`
}

func (a *API) handleAdminList(w http.ResponseWriter, r *http.Request, who string) {
	q := r.URL.Query()
	f := ListFilter{Holder: q.Get("holder"), Device: strings.ToLower(q.Get("device")), Status: RecordStatus(q.Get("status"))}
	switch f.Status {
	case "", StatusValid, StatusRevoked, StatusExpired:
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "status: want valid, revoked or expired")
		return
	}
	if e := q.Get("expiring"); e != "" {
		d, err := ParseDays(e)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "expiring: want a duration such as 30d or 72h")
			return
		}
		f.ExpiringWithin = d
	}
	kind := q.Get("kind")
	switch kind {
	case "", KindDevice, KindServer:
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "kind: want device or server")
		return
	}
	all, err := a.cfg.CA.List(r.Context(), f)
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	recs := []Record{}
	for _, rec := range all {
		if kind == "" || rec.Kind == kind {
			rec.Certificate = nil
			recs = append(recs, rec)
		}
	}
	a.adminAudit("list", who, r, zap.String("holder.email", f.Holder), zap.String("device.uuid", f.Device), zap.Int("nacd.count", len(recs)))
	writeJSON(w, http.StatusOK, ListResponse{Certificates: recs})
}

// ParseDays parses a Go duration or a whole number of days ("30d").
func ParseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func (a *API) adminAudit(action, who string, r *http.Request, fields ...zap.Field) {
	a.audit.Info("admin-"+action, append([]zap.Field{zap.String("event.action", "admin-"+action), zap.String("event.category", "pki"),
		zap.String("user.name", who), zap.String("source.address", remote(r))}, fields...)...)
}
