package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // RFC 6960 CertID hashes: SHA-1 is what openssl sends by default
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"
)

// OCSP response lifetime: NextUpdate is ThisUpdate + DefaultOCSPValidity.
const DefaultOCSPValidity = time.Hour

// maxOCSPNonce caps the nonce echoed (RFC 8954 allows 1..32 octets; some
// clients send a little more).
const maxOCSPNonce = 128

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// StatusSource answers for a serial of the responder's CA (CA.Status).
type StatusSource interface {
	Status(ctx context.Context, serial *big.Int) (Record, error)
}

// OCSPResponder answers RFC 6960 requests for the certificates of one
// issuing CA from nacd's inventory: good (issued here, not revoked),
// revoked (with time and reason) or unknown (never issued here). It signs
// with the issuer's own key (no delegated responder certificate), echoes
// the request nonce in the response extensions, and sets thisUpdate/
// nextUpdate. Requests for another issuer get "unauthorized".
//
// golang.org/x/crypto/ocsp parses requests; responses are marshalled here
// because ocsp.CreateResponse cannot put the nonce in responseExtensions
// (only in singleExtensions, where openssl does not look for it).
type OCSPResponder struct {
	Issuer   *x509.Certificate
	Signer   crypto.Signer
	Source   StatusSource
	Validity time.Duration // default DefaultOCSPValidity
	Log      *zap.Logger
	Now      func() time.Time
}

// OCSPResult is the outcome of one request, for logs and metrics.
type OCSPResult string

const (
	OCSPGood         OCSPResult = "good"
	OCSPRevoked      OCSPResult = "revoked"
	OCSPUnknown      OCSPResult = "unknown"
	OCSPMalformed    OCSPResult = "malformed"
	OCSPUnauthorized OCSPResult = "unauthorized"
	OCSPInternal     OCSPResult = "internal-error"
)

// Respond returns the DER OCSPResponse for a DER OCSPRequest. A request it
// cannot parse gets malformedRequest; a store failure internalError.
func (o *OCSPResponder) Respond(ctx context.Context, der []byte) ([]byte, OCSPResult) {
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse, OCSPMalformed
	}
	nonce, err := requestNonce(der)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse, OCSPMalformed
	}
	nameHash, keyHash, err := issuerHashes(o.Issuer, req.HashAlgorithm)
	if err != nil || !bytes.Equal(nameHash, req.IssuerNameHash) || !bytes.Equal(keyHash, req.IssuerKeyHash) {
		return ocsp.UnauthorizedErrorResponse, OCSPUnauthorized
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	validity := o.Validity
	if validity <= 0 {
		validity = DefaultOCSPValidity
	}
	single := singleResponse{
		CertID: certID{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOID(req.HashAlgorithm), Parameters: asn1.NullRawValue},
			NameHash:      nameHash, IssuerKeyHash: keyHash, SerialNumber: req.SerialNumber,
		},
	}
	result := OCSPGood
	rec, err := o.Source.Status(ctx, req.SerialNumber)
	switch {
	case errors.Is(err, ErrNotFound):
		single.Unknown = true
		result = OCSPUnknown
	case err != nil:
		if o.Log != nil {
			o.Log.Error("OCSP status lookup failed", zap.String("serial", req.SerialNumber.Text(16)), zap.Error(err))
		}
		return ocsp.InternalErrorErrorResponse, OCSPInternal
	case rec.Status == StatusRevoked:
		single.Revoked = revokedInfo{RevocationTime: rec.RevokedAt.UTC(), Reason: asn1.Enumerated(rec.Reason)}
		result = OCSPRevoked
	default:
		single.Good = true
	}
	t := now().UTC().Truncate(time.Second)
	single.ThisUpdate = t
	single.NextUpdate = t.Add(validity)
	data := responseData{
		RawResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: o.Issuer.RawSubject},
		ProducedAt:     t,
		Responses:      []singleResponse{single},
	}
	if nonce != nil {
		data.ResponseExtensions = []pkix.Extension{*nonce}
	}
	resp, err := o.sign(data)
	if err != nil {
		if o.Log != nil {
			o.Log.Error("OCSP response not signed", zap.Error(err))
		}
		return ocsp.InternalErrorErrorResponse, OCSPInternal
	}
	return resp, result
}

func (o *OCSPResponder) sign(data responseData) ([]byte, error) {
	tbs, err := asn1.Marshal(data)
	if err != nil {
		return nil, err
	}
	var (
		h     crypto.Hash
		algID pkix.AlgorithmIdentifier
	)
	switch k := o.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			h, algID = crypto.SHA384, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}}
		case elliptic.P521():
			h, algID = crypto.SHA512, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}}
		default:
			h, algID = crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}
		}
	case *rsa.PublicKey:
		h, algID = crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}
	default:
		return nil, fmt.Errorf("unsupported OCSP signing key %T", k)
	}
	hh := h.New()
	hh.Write(tbs)
	sig, err := o.Signer.Sign(rand.Reader, hh.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	basic, err := asn1.Marshal(basicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: algID,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(responseASN1{
		Status:   asn1.Enumerated(ocsp.Success),
		Response: responseBytes{ResponseType: oidOCSPBasic, Response: basic},
	})
}

// issuerHashes are the CertID hashes of issuer with h (SHA-1 or SHA-2).
func issuerHashes(issuer *x509.Certificate, h crypto.Hash) (name, key []byte, err error) {
	if hashOID(h) == nil || !h.Available() {
		return nil, nil, fmt.Errorf("unsupported CertID hash %v", h)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, nil, err
	}
	hn := h.New()
	hn.Write(issuer.RawSubject)
	hk := h.New()
	hk.Write(spki.PublicKey.RightAlign())
	return hn.Sum(nil), hk.Sum(nil), nil
}

func hashOID(h crypto.Hash) asn1.ObjectIdentifier {
	switch h {
	case crypto.SHA1:
		return asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	case crypto.SHA256:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	case crypto.SHA384:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	case crypto.SHA512:
		return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	}
	return nil
}

// requestNonce returns the nonce extension of an OCSP request, if any
// (x/crypto/ocsp does not expose request extensions).
func requestNonce(der []byte) (*pkix.Extension, error) {
	var req struct {
		TBS struct {
			Version       int           `asn1:"explicit,tag:0,default:0,optional"`
			RequestorName asn1.RawValue `asn1:"explicit,tag:1,optional"`
			RequestList   []asn1.RawValue
			Extensions    []pkix.Extension `asn1:"explicit,tag:2,optional"`
		}
		Rest asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return nil, err
	}
	for _, e := range req.TBS.Extensions {
		if e.Id.Equal(oidOCSPNonce) {
			if len(e.Value) == 0 || len(e.Value) > maxOCSPNonce {
				return nil, errors.New("bad nonce length")
			}
			return &pkix.Extension{Id: oidOCSPNonce, Value: e.Value}, nil
		}
	}
	return nil, nil
}

// RFC 6960 response structures (as golang.org/x/crypto/ocsp's, plus
// responseExtensions).
type responseASN1 struct {
	Status   asn1.Enumerated
	Response responseBytes `asn1:"explicit,tag:0,optional"`
}

type responseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type basicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	Version            int `asn1:"optional,default:0,explicit,tag:0"`
	RawResponderID     asn1.RawValue
	ProducedAt         time.Time `asn1:"generalized"`
	Responses          []singleResponse
	ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type certID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

type singleResponse struct {
	CertID     certID
	Good       asn1.Flag   `asn1:"tag:0,optional"`
	Revoked    revokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag   `asn1:"tag:2,optional"`
	ThisUpdate time.Time   `asn1:"generalized"`
	NextUpdate time.Time   `asn1:"generalized,explicit,tag:0,optional"`
}

type revokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}
