package radius

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
)

// Microsoft vendor attributes (RFC 2548).
const (
	vendorMicrosoft   = 311
	msMPPESendKey     = 16
	msMPPERecvKey     = 17
	mppeKeyLen        = 32
	mppeBlock         = md5.Size
	mppeSaltHighBit   = 0x80
	mppeKeyLengthByte = 1
)

// encryptMPPEKey salt-encrypts key for an MS-MPPE-Send-Key or
// MS-MPPE-Recv-Key attribute (RFC 2548 section 2.4.2): the plaintext is a
// one-octet key length, the key, and zero padding to a multiple of 16; it is
// XORed block by block with b(1) = MD5(secret || Request-Authenticator ||
// salt), b(i) = MD5(secret || c(i-1)). The result is salt || ciphertext.
// The salt's high bit must be set.
func encryptMPPEKey(key, secret []byte, reqAuth [16]byte, salt [2]byte) ([]byte, error) {
	if salt[0]&mppeSaltHighBit == 0 {
		return nil, errors.New("radius: MPPE salt without its high bit")
	}
	if len(key) == 0 || len(key) > 240 {
		return nil, errors.New("radius: MPPE key length out of range")
	}
	blocks := (mppeKeyLengthByte + len(key) + mppeBlock - 1) / mppeBlock
	out := make([]byte, 2+blocks*mppeBlock)
	copy(out, salt[:])
	p := out[2:]
	p[0] = byte(len(key))
	copy(p[1:], key)

	var b [md5.Size]byte
	h := md5.New()
	for i := 0; i < blocks; i++ {
		h.Reset()
		h.Write(secret)
		if i == 0 {
			h.Write(reqAuth[:])
			h.Write(salt[:])
		} else {
			h.Write(p[(i-1)*mppeBlock : i*mppeBlock])
		}
		h.Sum(b[:0])
		for j := range mppeBlock {
			p[i*mppeBlock+j] ^= b[j]
		}
	}
	return out, nil
}

// mppeSalts returns two distinct salts with the high bit set (RFC 2548: the
// salt must be unique per attribute of a packet).
func mppeSalts() (send, recv [2]byte, err error) {
	var r [4]byte
	if _, err = rand.Read(r[:]); err != nil {
		return send, recv, err
	}
	send = [2]byte{r[0] | mppeSaltHighBit, r[1]}
	recv = [2]byte{r[2] | mppeSaltHighBit, r[3]}
	if send == recv {
		recv[1] ^= 1
	}
	return send, recv, nil
}

// microsoftVSA wraps value as a Vendor-Specific attribute value for vendor
// Microsoft with the given vendor type.
func microsoftVSA(vendorType byte, value []byte) []byte {
	v := make([]byte, 6+len(value))
	binary.BigEndian.PutUint32(v, vendorMicrosoft)
	v[4] = vendorType
	v[5] = byte(2 + len(value))
	copy(v[6:], value)
	return v
}

// mppeAttributes returns the Vendor-Specific values of MS-MPPE-Recv-Key
// (msk[0:32]) and MS-MPPE-Send-Key (msk[32:64]), RFC 5216 section 2.3 and
// RFC 2548. The Recv key is the one the NAS uses to receive from the peer.
func mppeAttributes(msk, secret []byte, reqAuth [16]byte) (recv, send []byte, err error) {
	if len(msk) < 2*mppeKeyLen {
		return nil, nil, errors.New("radius: MSK shorter than 64 bytes")
	}
	sendSalt, recvSalt, err := mppeSalts()
	if err != nil {
		return nil, nil, err
	}
	r, err := encryptMPPEKey(msk[:mppeKeyLen], secret, reqAuth, recvSalt)
	if err != nil {
		return nil, nil, err
	}
	s, err := encryptMPPEKey(msk[mppeKeyLen:2*mppeKeyLen], secret, reqAuth, sendSalt)
	if err != nil {
		return nil, nil, err
	}
	return microsoftVSA(msMPPERecvKey, r), microsoftVSA(msMPPESendKey, s), nil
}
