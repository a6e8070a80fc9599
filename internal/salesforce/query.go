package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"github.com/countersign/countersign/internal/fault"
)

// DefaultDocumentKeyField is the ContentVersion external id of ARCHITECTURE §6.
const DefaultDocumentKeyField = "OneSpan_Document_Key__c"

type queryPage struct {
	TotalSize      int             `json:"totalSize"`
	Done           bool            `json:"done"`
	NextRecordsURL string          `json:"nextRecordsUrl"`
	Records        json.RawMessage `json:"records"`
}

// Query runs a SOQL query (GET /services/data/{v}/query?q=...) and appends
// every record to out, which must point to a slice (of structs with json
// tags, or of map[string]any). It follows nextRecordsUrl until done.
func (c *Client) Query(ctx context.Context, soql string, out any) error {
	op := "salesforce query " + truncate(soql, 120)
	pv := reflect.ValueOf(out)
	if pv.Kind() != reflect.Pointer || pv.IsNil() || pv.Elem().Kind() != reflect.Slice {
		return fault.Errorf(fault.Permanent, op, "out must be a non-nil pointer to a slice, not %T", out)
	}
	slice := pv.Elem()
	path := c.dataPath("query")
	query := url.Values{"q": {soql}}
	for page := 1; ; page++ {
		resp, err := c.do(ctx, request{op: OpQuery, what: op, method: http.MethodGet, path: path, query: query})
		if err != nil {
			return err
		}
		var qp queryPage
		if err := json.Unmarshal(resp.body, &qp); err != nil {
			return fault.Errorf(fault.Retryable, op, "decode page %d: %w", page, err)
		}
		if len(qp.Records) > 0 && string(qp.Records) != "null" {
			batch := reflect.New(slice.Type())
			if err := json.Unmarshal(qp.Records, batch.Interface()); err != nil {
				return fault.Errorf(fault.Permanent, op, "decode records of page %d: %w", page, err)
			}
			slice.Set(reflect.AppendSlice(slice, batch.Elem()))
		}
		if qp.Done || qp.NextRecordsURL == "" {
			return nil
		}
		// The next page must stay on the instance's REST API: the token
		// goes with every request, so never follow a link elsewhere.
		next, err := url.Parse(qp.NextRecordsURL)
		if err != nil || next.IsAbs() || next.Host != "" || !strings.HasPrefix(next.Path, "/services/data/") {
			return fault.Errorf(fault.Permanent, op, "refusing nextRecordsUrl %q", qp.NextRecordsURL)
		}
		path, query = next.EscapedPath(), next.Query()
	}
}

// EscapeSOQL escapes s for use inside a single-quoted SOQL string literal
// (backslash and single quote).
func EscapeSOQL(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

// QuoteSOQL returns s as a SOQL string literal, quotes included:
// QuoteSOQL(`O'Brien`) == `'O\'Brien'`.
func QuoteSOQL(s string) string {
	return "'" + EscapeSOQL(s) + "'"
}

// ContentVersionRef identifies an uploaded file.
type ContentVersionRef struct {
	ID                string `json:"Id"`
	ContentDocumentID string `json:"ContentDocumentId"`
}

// FindContentVersion looks up the ContentVersion whose docKeyField (default
// OneSpan_Document_Key__c) equals key, so a retried upload finds the file an
// earlier attempt created. found is false when there is none.
func (c *Client) FindContentVersion(ctx context.Context, docKeyField, key string) (ref ContentVersionRef, found bool, err error) {
	if docKeyField == "" {
		docKeyField = DefaultDocumentKeyField
	}
	if err := checkNames(fmt.Sprintf("salesforce find content version %s=%s", docKeyField, key), docKeyField); err != nil {
		return ContentVersionRef{}, false, err
	}
	var refs []ContentVersionRef
	soql := "SELECT Id, ContentDocumentId FROM ContentVersion WHERE " + docKeyField + " = " + QuoteSOQL(key)
	if err := c.Query(ctx, soql, &refs); err != nil {
		return ContentVersionRef{}, false, err
	}
	if len(refs) == 0 {
		return ContentVersionRef{}, false, nil
	}
	return refs[0], true, nil
}
