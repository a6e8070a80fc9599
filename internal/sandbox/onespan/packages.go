package onespan

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ConsentDocumentID is the consent document OneSpan adds to every package.
const ConsentDocumentID = "default-consent"

const (
	consentSize         = 4 << 10
	defaultDocumentSize = 32 << 10
	defaultEvidenceSize = 16 << 10
)

// Package is a package to plant in the emulator. Zero fields get defaults:
// status DRAFT, created/updated now, a consent document first.
type Package struct {
	ID           string
	Name         string
	Status       string // DRAFT, SENT, COMPLETED, DECLINED, OPTED_OUT, EXPIRED, ARCHIVED
	Documents    []Document
	Signers      []Signer
	EvidenceSize int64 // bytes of the evidence summary; default 16 KiB
	Created      time.Time
	Updated      time.Time
	Completed    time.Time
	Messages     []Message
}

// Document is a document of a package; Size is the length of its generated PDF.
type Document struct {
	ID     string
	Name   string
	Size   int64 // default 32 KiB
	Signed bool
}

// Signer fills one role of a package.
type Signer struct {
	ID        string
	Email     string
	FirstName string
	LastName  string
}

// Message is a decline or opt-out reason.
type Message struct {
	Content string
	From    string // signer id
	Created time.Time
}

type pkgState struct{ Package }

// AddPackage plants (or replaces) a package. The consent document is added
// first unless the package already lists it.
func (s *Server) AddPackage(p Package) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	if p.Status == "" {
		p.Status = "DRAFT"
	}
	if p.Created.IsZero() {
		p.Created = now
	}
	if p.Updated.IsZero() {
		p.Updated = p.Created
	}
	if p.EvidenceSize <= 0 {
		p.EvidenceSize = defaultEvidenceSize
	}
	docs := make([]Document, 0, len(p.Documents)+1)
	if !slices.ContainsFunc(p.Documents, func(d Document) bool { return d.ID == ConsentDocumentID }) {
		docs = append(docs, Document{ID: ConsentDocumentID, Name: "Electronic Disclosures and Signatures Consent", Size: consentSize})
	}
	for _, d := range p.Documents {
		if d.Size <= 0 {
			d.Size = defaultDocumentSize
		}
		docs = append(docs, d)
	}
	p.Documents = docs
	p.Signers = slices.Clone(p.Signers)
	p.Messages = slices.Clone(p.Messages)
	s.packages[p.ID] = &pkgState{Package: p}
}

// Package returns a copy of a planted package.
func (s *Server) Package(id string) (Package, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.packages[id]
	if !ok {
		return Package{}, false
	}
	p := st.Package
	p.Documents = slices.Clone(p.Documents)
	p.Signers = slices.Clone(p.Signers)
	p.Messages = slices.Clone(p.Messages)
	return p, true
}

// RemovePackage deletes a package: the API answers 404 for it from now on.
func (s *Server) RemovePackage(id string) {
	s.mu.Lock()
	delete(s.packages, id)
	s.mu.Unlock()
}

// --- wire ---

// OneSpan writes dates as RFC 3339 seconds in UTC.
func wireTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func (p *Package) wire() map[string]any {
	docs := make([]map[string]any, 0, len(p.Documents))
	for i, d := range p.Documents {
		doc := map[string]any{"id": d.ID, "name": d.Name, "index": i, "description": ""}
		if d.Signed {
			doc["signedHash"] = ExpectedSHA256(p.ID, d.ID, min(d.Size, 1<<10)) // cheap stand-in
		}
		docs = append(docs, doc)
	}
	roles := make([]map[string]any, 0, len(p.Signers))
	for i, sg := range p.Signers {
		roles = append(roles, map[string]any{
			"id": sg.ID, "name": fmt.Sprintf("Signer%d", i+1), "type": "SIGNER", "index": i + 1,
			"signers": []map[string]any{{"id": sg.ID, "email": sg.Email, "firstName": sg.FirstName, "lastName": sg.LastName}},
		})
	}
	msgs := make([]map[string]any, 0, len(p.Messages))
	for _, m := range p.Messages {
		msgs = append(msgs, map[string]any{
			"content": m.Content, "status": "NEW", "created": wireTime(m.Created),
			"from": map[string]any{"id": m.From},
		})
	}
	return map[string]any{
		"id": p.ID, "name": p.Name, "description": "", "status": p.Status, "type": "PACKAGE",
		"documents": docs, "roles": roles, "messages": msgs, "data": map[string]any{},
		"created": wireTime(p.Created), "updated": wireTime(p.Updated),
		"completed": wireTime(p.Completed), "due": nil, "trashed": false,
		"autocomplete": true, "language": "en",
	}
}

func (s *Server) handleGetPackage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st, ok := s.packages[r.PathValue("id")]
	var body map[string]any
	if ok {
		body = st.wire()
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "error.notFound.packageNotFound", "Package not found.")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handlePDF(w http.ResponseWriter, r *http.Request) {
	pkgID, docID := r.PathValue("id"), r.PathValue("doc")
	s.mu.Lock()
	st, ok := s.packages[pkgID]
	var size int64 = -1
	if ok {
		for _, d := range st.Documents {
			if d.ID == docID {
				size = d.Size
			}
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "error.notFound.packageNotFound", "Package not found.")
	case size < 0:
		writeError(w, http.StatusNotFound, "error.notFound.documentNotFound", "Document not found.")
	default:
		streamPDF(w, r, "application/pdf", Content(pkgID, docID, size), size)
	}
}

func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	pkgID := r.PathValue("id")
	s.mu.Lock()
	st, ok := s.packages[pkgID]
	var size int64
	if ok {
		size = st.EvidenceSize
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "error.notFound.packageNotFound", "Package not found.")
		return
	}
	streamPDF(w, r, "application/pdf", Content(pkgID, EvidenceSummaryDocID, size), size)
}

// streamPDF writes a generated body in 64 KiB chunks with Content-Length set.
func streamPDF(w http.ResponseWriter, r *http.Request, ctype string, body io.Reader, size int64) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	buf := make([]byte, 64<<10)
	_, _ = io.CopyBuffer(w, body, buf)
}

// listDate accepts the SDK's "2006-01-02T15:04:05Z" and full RFC 3339.
func listDate(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02", v)
}

// handleList serves GET /api/packages?query=<status>&from=&to=
// [&lastUpdatedStartDate=&lastUpdatedEndDate=] (SDK UrlTemplate), newest
// update first; from/to are 1-based inclusive indexes.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, to := 1, 50
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 1 {
			writeError(w, http.StatusBadRequest, "error.validation.paging", "from must be a positive integer.")
			return
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = strconv.Atoi(v); err != nil || to < from {
			writeError(w, http.StatusBadRequest, "error.validation.paging", "to must be an integer not below from.")
			return
		}
	}
	var start, end time.Time
	if v := q.Get("lastUpdatedStartDate"); v != "" {
		if start, err = listDate(v); err != nil {
			writeError(w, http.StatusBadRequest, "error.validation.date", "Invalid lastUpdatedStartDate.")
			return
		}
	}
	if v := q.Get("lastUpdatedEndDate"); v != "" {
		if end, err = listDate(v); err != nil {
			writeError(w, http.StatusBadRequest, "error.validation.date", "Invalid lastUpdatedEndDate.")
			return
		}
	}
	status := strings.ToUpper(q.Get("query"))
	s.mu.Lock()
	var match []*pkgState
	for _, st := range s.packages {
		if status != "" && st.Status != status {
			continue
		}
		// The wire has second precision, so compare at that precision too.
		u := st.Updated.Truncate(time.Second)
		if !start.IsZero() && u.Before(start) || !end.IsZero() && u.After(end) {
			continue
		}
		match = append(match, st)
	}
	slices.SortFunc(match, func(a, b *pkgState) int {
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	results := []map[string]any{}
	for i := from - 1; i < to && i < len(match); i++ {
		results = append(results, match[i].wire())
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"count": len(match), "results": results})
}
