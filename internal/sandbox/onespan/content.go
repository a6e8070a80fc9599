package onespan

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strconv"
)

// EvidenceSummaryDocID is the name used to derive evidence summary content.
const EvidenceSummaryDocID = "evidence-summary"

// Content returns the bytes the emulator serves for a document (or, with
// docID EvidenceSummaryDocID, the evidence summary) of the given size. They
// are generated on the fly, deterministic per (pkgID, docID, size), start with
// a PDF header and end with %%EOF, so any size costs no memory.
func Content(pkgID, docID string, size int64) io.Reader {
	head := "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n% countersign sandbox: " + strconv.Quote(pkgID+"/"+docID) + "\n"
	seed := sha256.Sum256([]byte(pkgID + "\x00" + docID))
	return &pdfReader{
		size: size,
		head: []byte(head),
		tail: []byte("\n%%EOF\n"),
		rng:  rand.NewChaCha8(seed),
	}
}

// ExpectedSHA256 is the hex SHA-256 of Content(pkgID, docID, size): what a test
// should find in Salesforce after the document was copied there.
func ExpectedSHA256(pkgID, docID string, size int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, Content(pkgID, docID, size))
	return hex.EncodeToString(h.Sum(nil))
}

// pdfReader yields head, then pseudo-random filler, then tail, truncated to size.
type pdfReader struct {
	size, pos  int64
	head, tail []byte
	rng        *rand.ChaCha8
}

func (r *pdfReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	tailStart := r.size - int64(len(r.tail))
	if tailStart < int64(len(r.head)) {
		tailStart = r.size // too small for both: header only, truncated
	}
	n := 0
	for n < len(p) {
		at := r.pos + int64(n)
		var src []byte
		switch {
		case at < int64(len(r.head)):
			end := min(int64(len(r.head)), tailStart)
			src = r.head[at:end]
		case at >= tailStart:
			src = r.tail[at-tailStart:]
		default:
			k := min(int64(len(p)-n), tailStart-at)
			_, _ = r.rng.Read(p[n : n+int(k)])
			n += int(k)
			continue
		}
		n += copy(p[n:], src)
	}
	r.pos += int64(n)
	return n, nil
}
