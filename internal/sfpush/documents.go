package sfpush

import (
	"context"
	"fmt"
	"io"

	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/salesforce"
)

// EvidenceSummaryKey is the document key suffix of the evidence summary.
const EvidenceSummaryKey = "evidence-summary"

// DocumentKey is OneSpan_Document_Key__c: <packageId>/<documentId>.
func DocumentKey(packageID, documentID string) string { return packageID + "/" + documentID }

type document struct {
	key, title, filename string
	open                 func(ctx context.Context) (io.ReadCloser, int64, error)
}

// uploadDocuments streams every signed document (not the consent document)
// and the evidence summary of a completed package into ContentVersion records
// linked to its transaction. Each file's key makes a retry find the earlier
// upload instead of making a second file.
func (tw *tenantWorker) uploadDocuments(ctx context.Context, pkg string) error {
	st, _, err := tw.store.get(ctx, pkg)
	if err != nil {
		return fault.New(fault.Retryable, "package state", err)
	}
	if st.RecordID == "" {
		return fault.Errorf(fault.Retryable, "documents of package "+pkg, "transaction record id not known yet")
	}
	p, err := tw.t.OneSpan.GetPackage(ctx, pkg)
	if err != nil {
		return fmt.Errorf("documents of package %s: %w", pkg, err)
	}
	var docs []document
	if tw.t.Config.Documents.UploadEnabled() {
		for _, d := range p.SignedDocuments() {
			d := d
			docs = append(docs, document{
				key: DocumentKey(pkg, d.ID), title: d.Name, filename: pdfName(d.Name, d.ID),
				open: func(ctx context.Context) (io.ReadCloser, int64, error) {
					return tw.t.OneSpan.DocumentPDF(ctx, pkg, d.ID)
				},
			})
		}
	}
	if tw.t.Config.Documents.EvidenceEnabled() {
		docs = append(docs, document{
			key: DocumentKey(pkg, EvidenceSummaryKey), title: "Evidence summary", filename: "evidence-summary.pdf",
			open: func(ctx context.Context) (io.ReadCloser, int64, error) {
				return tw.t.OneSpan.EvidenceSummary(ctx, pkg)
			},
		})
	}
	var errs []error
	for _, d := range docs {
		if _, done := st.Documents[d.key]; done {
			continue
		}
		id, err := tw.upload(ctx, st.RecordID, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := tw.store.update(ctx, pkg, func(s *PackageState) bool {
			if s.Documents == nil {
				s.Documents = map[string]string{}
			}
			s.Documents[d.key] = id
			return true
		}); err != nil {
			errs = append(errs, fault.New(fault.Retryable, "record uploaded document "+d.key, err))
		}
	}
	return worst(errs)
}

// upload returns the ContentVersion of d, uploading it unless an earlier
// attempt already did.
func (tw *tenantWorker) upload(ctx context.Context, recordID string, d document) (string, error) {
	keyField := tw.t.Config.Salesforce.Objects.Document.DocumentKey
	ref, found, err := tw.t.Salesforce.FindContentVersion(ctx, keyField, d.key)
	if err != nil {
		return "", fmt.Errorf("look up document %s: %w", d.key, err)
	}
	if found {
		return ref.ID, nil
	}
	fields := map[string]any{
		"Title":                  d.title,
		"PathOnClient":           d.filename,
		"FirstPublishLocationId": recordID,
		keyField:                 d.key,
	}
	var sent int64
	open := func() (io.ReadCloser, error) {
		rc, _, err := d.open(ctx)
		if err != nil {
			return nil, err
		}
		sent = 0
		return &countingReader{rc: rc, n: &sent}, nil
	}
	id, err := tw.t.Salesforce.InsertContentVersionFrom(ctx, fields, d.filename, open)
	if err != nil {
		// A response lost after Salesforce committed: the key says so.
		if dup, ok := salesforce.DuplicateRecordID(err); ok {
			return dup, nil
		}
		return "", fmt.Errorf("upload document %s: %w", d.key, err)
	}
	tw.w.o.Metrics.DocumentsUploaded.WithLabelValues(tw.t.ID).Inc()
	tw.w.o.Metrics.DocumentBytes.WithLabelValues(tw.t.ID).Add(float64(sent))
	tw.log.InfoContext(ctx, "document uploaded", "document_key", d.key, "bytes", sent, "content_version", id)
	return id, nil
}

type countingReader struct {
	rc io.ReadCloser
	n  *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	*c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }

func pdfName(name, id string) string {
	if name == "" {
		name = id
	}
	return name + ".pdf"
}

// worst returns the error whose class asks for the most caution, so a
// permanent problem with one file is not hidden by a retryable one.
func worst(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	rank := map[fault.Class]int{fault.Retryable: 1, fault.AuthExpired: 1, fault.Throttled: 2, fault.Reconnect: 3, fault.Permanent: 4}
	best := errs[0]
	for _, e := range errs[1:] {
		if rank[fault.ClassOf(e)] > rank[fault.ClassOf(best)] {
			best = e
		}
	}
	if len(errs) > 1 {
		return fmt.Errorf("%w (and %d more document errors)", best, len(errs)-1)
	}
	return best
}
