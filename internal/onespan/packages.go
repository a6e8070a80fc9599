package onespan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

// ConsentDocumentID is the id OneSpan gives the consent (electronic
// disclosures) document it adds to every package.
const ConsentDocumentID = "default-consent"

// IsConsentDocument reports whether a document id is OneSpan's consent
// document, which is not a signed business document and is not uploaded.
func IsConsentDocument(docID string) bool { return docID == ConsentDocumentID }

// Package statuses (PackageStatus.java).
const (
	StatusDraft     = "DRAFT"
	StatusSent      = "SENT"
	StatusCompleted = "COMPLETED"
	StatusArchived  = "ARCHIVED"
	StatusDeclined  = "DECLINED"
	StatusOptedOut  = "OPTED_OUT"
	StatusExpired   = "EXPIRED"
)

// Package is the part of GET /api/packages/{id} that Countersign uses. Field
// names follow api/model/Package.java; unknown fields are ignored.
type Package struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Status      string         `json:"status"`
	Type        string         `json:"type,omitempty"`
	Documents   []Document     `json:"documents"`
	Roles       []Role         `json:"roles,omitempty"`
	Messages    []Message      `json:"messages,omitempty"`
	Data        map[string]any `json:"data,omitempty"`
	Created     Time           `json:"created"`
	Updated     Time           `json:"updated"`
	Completed   Time           `json:"completed"`
	Due         Time           `json:"due"`
	Trashed     bool           `json:"trashed,omitempty"`
}

// Document is one document of a package.
type Document struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Index      int    `json:"index"`
	SignedHash string `json:"signedHash,omitempty"`
}

// Role is a signer slot; Signers holds who fills it.
type Role struct {
	ID      string   `json:"id"`
	Name    string   `json:"name,omitempty"`
	Type    string   `json:"type,omitempty"`
	Signers []Signer `json:"signers,omitempty"`
}

// Signer is a person in a role.
type Signer struct {
	ID        string `json:"id,omitempty"`
	Email     string `json:"email,omitempty"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
}

// Message carries decline and opt-out reasons.
type Message struct {
	Content string  `json:"content"`
	Status  string  `json:"status,omitempty"`
	Created Time    `json:"created"`
	From    *Signer `json:"from,omitempty"`
}

// SignedDocuments returns the documents to archive: every document but the consent one.
func (p *Package) SignedDocuments() []Document {
	var out []Document
	for _, d := range p.Documents {
		if !IsConsentDocument(d.ID) {
			out = append(out, d)
		}
	}
	return out
}

// Time is a OneSpan timestamp. It decodes leniently (null, "", RFC 3339 with
// or without fraction, a space instead of T, epoch milliseconds) because
// OneSpan's formats are not documented field by field.
type Time struct{ time.Time }

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// UnmarshalJSON accepts the forms listed on Time.
func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" || string(b) == `""` {
		t.Time = time.Time{}
		return nil
	}
	if b[0] != '"' {
		ms, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return fmt.Errorf("onespan time %s: not a string or epoch milliseconds", b)
		}
		t.Time = time.UnixMilli(ms).UTC()
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, l := range timeLayouts {
		if v, err := time.Parse(l, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return fmt.Errorf("onespan time %q: unknown format", s)
}

// MarshalJSON writes RFC 3339 in UTC, or null for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339) + `"`), nil
}

// GetPackage reads GET /api/packages/{id}.
func (c *Client) GetPackage(ctx context.Context, id string) (*Package, error) {
	var p Package
	if err := c.getJSON(ctx, "get package "+id, "/packages/"+esc(id), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DocumentPDF streams the signed PDF of one document. The caller closes the
// reader; size is the Content-Length, or -1 when OneSpan does not send one.
func (c *Client) DocumentPDF(ctx context.Context, pkgID, docID string) (io.ReadCloser, int64, error) {
	return c.stream(ctx, "get document "+pkgID+"/"+docID+" pdf",
		"/packages/"+esc(pkgID)+"/documents/"+esc(docID)+"/pdf", "application/octet-stream")
}

// EvidenceSummary streams the evidence summary (audit) PDF of a package. The
// caller closes the reader; size is -1 when unknown.
func (c *Client) EvidenceSummary(ctx context.Context, pkgID string) (io.ReadCloser, int64, error) {
	return c.stream(ctx, "get evidence summary "+pkgID,
		"/packages/"+esc(pkgID)+"/evidence/summary", "application/pdf")
}

// ListOptions selects packages for GET /api/packages. From and To are
// OneSpan's 1-based inclusive result indexes (the SDK's PageRequest).
type ListOptions struct {
	Status      string    // query=<status>, e.g. COMPLETED; empty sends no query
	UpdatedFrom time.Time // lastUpdatedStartDate; zero = no bound
	UpdatedTo   time.Time // lastUpdatedEndDate; zero = now when UpdatedFrom is set
	From, To    int       // defaults 1 and From+DefaultPageSize-1
}

// DefaultPageSize is the page size used when ListOptions.To is not set.
const DefaultPageSize = 50

// PackageList is one page of a listing. Count is the total number of
// matches, or -1 when the answer did not say (a bare JSON array).
type PackageList struct {
	Count   int       `json:"count"`
	Results []Package `json:"results"`
}

// listDateLayout is the SDK's DateHelper.dateToIsoUtcFormat.
const listDateLayout = "2006-01-02T15:04:05Z"

// ListPackages reads one page of GET /api/packages. The query parameters are
// the SDK's PACKAGE_LIST_STATUS_DATE_RANGE_PATH (UrlTemplate.java).
func (c *Client) ListPackages(ctx context.Context, o ListOptions) (*PackageList, error) {
	from, to := o.From, o.To
	if from < 1 {
		from = 1
	}
	if to < from {
		to = from + DefaultPageSize - 1
	}
	q := url.Values{}
	if o.Status != "" {
		q.Set("query", o.Status)
	}
	q.Set("from", strconv.Itoa(from))
	q.Set("to", strconv.Itoa(to))
	if !o.UpdatedFrom.IsZero() || !o.UpdatedTo.IsZero() {
		end := o.UpdatedTo
		if end.IsZero() {
			end = time.Now()
		}
		q.Set("lastUpdatedStartDate", o.UpdatedFrom.UTC().Format(listDateLayout))
		q.Set("lastUpdatedEndDate", end.UTC().Format(listDateLayout))
	}
	op := fmt.Sprintf("list packages %s %d-%d", strings.ToLower(o.Status), from, to)
	var raw json.RawMessage
	if err := c.getJSON(ctx, op, "/packages", q, &raw); err != nil {
		return nil, err
	}
	// Lenient: OneSpan answers {"count","results"}; accept a bare array too.
	var out PackageList
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &out.Results); err != nil {
			return nil, fault.Errorf(fault.Permanent, "onespan "+op, "decode response: %w", err)
		}
		out.Count = -1
		return &out, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fault.Errorf(fault.Permanent, "onespan "+op, "decode response: %w", err)
	}
	return &out, nil
}

// EachPackage walks every page of a listing, pageSize packages at a time,
// calling fn for each package until the listing ends or fn returns an error.
// Packages updated during the walk may be seen twice or missed: callers
// reconcile with a lookback window.
func (c *Client) EachPackage(ctx context.Context, o ListOptions, pageSize int, fn func(*Package) error) error {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	for from := 1; ; from += pageSize {
		o.From, o.To = from, from+pageSize-1
		page, err := c.ListPackages(ctx, o)
		if err != nil {
			return err
		}
		for i := range page.Results {
			if err := fn(&page.Results[i]); err != nil {
				return err
			}
		}
		if len(page.Results) < pageSize || (page.Count >= 0 && from+pageSize > page.Count) {
			return nil
		}
	}
}
