// Package pki owns nacd's trust anchors and revocation checking, and a minimal
// bootstrap CA for the embedded default.
//
// The RADIUS path calls TrustStore.VerifyClient to verify a device chain: it
// builds the chain against each configured anchor (cached, parsed once),
// checks the leaf's clientAuth EKU, looks every non-root certificate of the
// verified chain up in the CRL of its issuer, and returns a policy.Identity
// with Anchor, AnchorIL3, Status and Revocation filled. CRLs are loaded from
// files or http(s) URLs and refreshed on a timer; the last good CRL is kept
// when a refresh fails.
//
// pki must never accept a chain it could not verify (every failure is a
// non-ok Status), and must never report revocation as checked when it was
// not (Revocation.Checked is true only when a CRL whose signature verified
// with the issuer's certificate answered for every certificate checked).
//
// The full CA lifecycle (issuance, renewal, revocation, OCSP) is a later
// issue; Bootstrap only creates a throwaway local CA for the default setup.
package pki
