package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// chainRec is the part of a record the verifier reads.
type chainRec struct {
	seq       uint64
	hashPrev  string
	msg       string
	time      string
	sealFirst uint64
	keyID     string
	signature string
}

type rawChain struct {
	Seq       *uint64 `json:"event.sequence"`
	HashPrev  *string `json:"hash_prev"`
	Msg       string  `json:"msg"`
	Time      string  `json:"time"`
	SealFirst uint64  `json:"nacd.seal.first_sequence"`
	KeyID     string  `json:"nacd.seal.key_id"`
	Signature string  `json:"nacd.seal.signature"`
}

func parseChain(line []byte) (chainRec, error) {
	var r rawChain
	if err := json.Unmarshal(line, &r); err != nil {
		return chainRec{}, fmt.Errorf("not JSON: %v", err)
	}
	if r.Seq == nil || r.HashPrev == nil || len(*r.HashPrev) != 64 {
		return chainRec{}, errors.New("no event.sequence or hash_prev")
	}
	return chainRec{seq: *r.Seq, hashPrev: *r.HashPrev, msg: r.Msg, time: r.Time, sealFirst: r.SealFirst, keyID: r.KeyID, signature: r.Signature}, nil
}

// Problem kinds a Verify error names.
const (
	ProblemAltered    = "altered"     // a record's bytes changed (the next record's hash_prev does not match)
	ProblemRemoved    = "removed"     // records (or a whole file) missing before this one
	ProblemReordered  = "reordered"   // this record's sequence number goes backwards
	ProblemTruncated  = "truncated"   // the file ends inside a record, or a rotated file ends unsealed
	ProblemMalformed  = "malformed"   // a line is not a chained record
	ProblemForgedSeal = "forged-seal" // a seal's signature or key does not verify
)

// VerifyError names the first record where the chain breaks.
type VerifyError struct {
	File    string
	Line    int
	Seq     uint64 // 0 when the line could not be read
	Problem string
	Detail  string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s:%d: seq %d: %s: %s", e.File, e.Line, e.Seq, e.Problem, e.Detail)
}

// VerifyResult summarises a verified set of files.
type VerifyResult struct {
	Files    int
	Records  int    // lines, seals included
	Seals    int    // seals whose signatures verified (0 without a key)
	FirstSeq uint64 // sequence number of the first record
	LastSeq  uint64
	// Unsealed counts the records after the last seal (the live file's
	// tail, or every record when no key was given): intact as a chain, but
	// not protected against a rewrite of the tail.
	Unsealed int
	// Start is true when the first record opens a new chain (seq 1);
	// otherwise earlier files were not given.
	Start bool
}

// Verify checks the hash chain across files (given oldest first) and, with
// pub, every seal. It returns the first break as a *VerifyError.
func Verify(files []string, pub ed25519.PublicKey) (VerifyResult, error) {
	var res VerifyResult
	var (
		prevHash  string
		prevSeq   uint64
		prevFile  string
		prevLine  int
		sealFirst uint64
		haveSeal  bool
		wantKey   string
	)
	if pub != nil {
		wantKey = KeyID(pub)
	}
	for fi, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return res, err
		}
		res.Files++
		br := bufio.NewReaderSize(f, 256<<10)
		lineNo := 0
		lastWasSeal := false
		for {
			line, err := br.ReadBytes('\n')
			if len(line) == 0 && err == io.EOF {
				break
			}
			if err != nil && err != io.EOF {
				f.Close()
				return res, err
			}
			lineNo++
			if line[len(line)-1] != '\n' {
				f.Close()
				return res, &VerifyError{File: path, Line: lineNo, Problem: ProblemTruncated, Detail: "the file ends inside a record (no newline)"}
			}
			line = line[:len(line)-1]
			rec, perr := parseChain(line)
			if perr != nil {
				f.Close()
				if prevFile != "" {
					return res, &VerifyError{File: path, Line: lineNo, Problem: ProblemMalformed, Detail: perr.Error()}
				}
				return res, &VerifyError{File: path, Line: lineNo, Problem: ProblemMalformed, Detail: perr.Error()}
			}
			if res.Records == 0 {
				res.FirstSeq = rec.seq
				res.Start = rec.seq == 1
				if rec.seq == 1 && rec.hashPrev != GenesisHash {
					f.Close()
					return res, &VerifyError{File: path, Line: lineNo, Seq: rec.seq, Problem: ProblemAltered, Detail: "the first record of a chain must have a zero hash_prev"}
				}
				sealFirst = rec.seq
			} else {
				if verr := linkError(rec, prevSeq, prevHash, prevFile, prevLine, path, lineNo); verr != nil {
					if verr.Problem == ProblemRemoved {
						// Swapped, not removed, when the missing record comes next.
						if next, err := br.ReadBytes('\n'); err == nil {
							if nr, err := parseChain(bytes.TrimRight(next, "\n")); err == nil && nr.seq == prevSeq+1 {
								verr.Problem = ProblemReordered
								verr.Detail = fmt.Sprintf("seq %d comes before seq %d (line %d): records swapped or moved", rec.seq, nr.seq, lineNo+1)
							}
						}
					}
					f.Close()
					return res, verr
				}
			}
			res.Records++
			res.LastSeq = rec.seq
			lastWasSeal = false
			if rec.msg == ActionSeal {
				if pub != nil {
					if verr := checkSeal(rec, pub, wantKey, sealFirst, haveSeal); verr != "" {
						f.Close()
						return res, &VerifyError{File: path, Line: lineNo, Seq: rec.seq, Problem: ProblemForgedSeal, Detail: verr}
					}
					res.Seals++
					res.Unsealed = 0
					haveSeal = true
					lastWasSeal = true
				}
				sealFirst = rec.seq + 1
			} else {
				res.Unsealed++
			}
			prevHash, prevSeq, prevFile, prevLine = hashLine(line), rec.seq, path, lineNo
		}
		f.Close()
		if pub != nil && fi < len(files)-1 && !lastWasSeal {
			return res, &VerifyError{File: path, Line: lineNo, Seq: prevSeq, Problem: ProblemTruncated,
				Detail: "a rotated file must end with a seal: records were cut from its end"}
		}
	}
	if pub == nil {
		res.Unsealed = res.Records
	}
	return res, nil
}

func linkError(rec chainRec, prevSeq uint64, prevHash, prevFile string, prevLine int, path string, line int) *VerifyError {
	switch {
	case rec.seq == prevSeq+1 && rec.hashPrev == prevHash:
		return nil
	case rec.seq <= prevSeq:
		return &VerifyError{File: path, Line: line, Seq: rec.seq, Problem: ProblemReordered,
			Detail: fmt.Sprintf("seq %d follows seq %d (%s:%d)", rec.seq, prevSeq, prevFile, prevLine)}
	case rec.seq > prevSeq+1:
		return &VerifyError{File: path, Line: line, Seq: rec.seq, Problem: ProblemRemoved,
			Detail: fmt.Sprintf("seq %d follows seq %d (%s:%d): %d records missing (removed, or moved later)", rec.seq, prevSeq, prevFile, prevLine, rec.seq-prevSeq-1)}
	case rec.seq == prevSeq+1:
		return &VerifyError{File: prevFile, Line: prevLine, Seq: prevSeq, Problem: ProblemAltered,
			Detail: fmt.Sprintf("the record's hash differs from the hash_prev of the next record (%s:%d)", path, line)}
	}
	return nil
}

func checkSeal(rec chainRec, pub ed25519.PublicKey, wantKey string, sealFirst uint64, haveSeal bool) string {
	if rec.keyID != wantKey {
		return fmt.Sprintf("sealed by key %s, not %s", rec.keyID, wantKey)
	}
	sig, err := base64.StdEncoding.DecodeString(rec.signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "the signature is not a base64 Ed25519 signature"
	}
	if haveSeal && rec.sealFirst != sealFirst {
		return fmt.Sprintf("the seal says it covers from seq %d, the previous seal ended at %d", rec.sealFirst, sealFirst-1)
	}
	if !ed25519.Verify(pub, SealMessage(rec.seq, rec.hashPrev, rec.sealFirst, rec.time), sig) {
		return "the signature does not verify"
	}
	return ""
}

// lineReader is shared by Query: it yields lines without the newline.
func forEachLine(r io.Reader, fn func(line []byte) bool) error {
	br := bufio.NewReaderSize(r, 256<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long record: collect it whole.
			buf := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(line) > 0 {
			if !fn(bytes.TrimRight(line, "\n")) {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
