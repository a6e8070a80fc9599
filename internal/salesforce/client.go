// Package salesforce is a thin Salesforce REST client: upsert by external id,
// sObject Collections upsert, ContentVersion multipart upload, SOQL query,
// Sforce-Limit-Info, and classified errors. It holds no business logic and no
// credentials: the HTTP client's transport adds the bearer token.
package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

// Operation names given to Config.Observer (the `operation` metric label).
const (
	OpUpsert           = "upsert"
	OpCollectionUpsert = "collection_upsert"
	OpContentVersion   = "content_version"
	OpQuery            = "query"
)

// MaxCollectionRecords is the sObject Collections limit per request.
const MaxCollectionRecords = 200

// DefaultAPIVersion is used when Config.APIVersion is empty.
const DefaultAPIVersion = "v62.0"

// maxResponseBytes bounds what we read from one answer (a query page of
// 2,000 wide records stays far below it).
const maxResponseBytes = 64 << 20

// Config configures a Client.
type Config struct {
	// InstanceURL is the org's base URL (https://x.my.salesforce.com).
	// InstanceURLFunc, when set, wins: a token refresh may move the org.
	InstanceURL     string
	InstanceURLFunc func() string
	// InstanceURLSource, when set, wins over both: it may fail, and its
	// error keeps its class (a token source that cannot reach Salesforce is
	// Retryable; one whose grant is gone is Reconnect).
	InstanceURLSource func(ctx context.Context) (string, error)
	// APIVersion like "v62.0" ("62.0" is accepted too).
	APIVersion string
	// HTTPClient's transport adds the bearer token and handles 401 refresh.
	// Nil means http.DefaultClient (no auth: tests only).
	HTTPClient *http.Client
	// Observer, when set, is called after every HTTP exchange with the
	// operation, the status (0 when no answer came), the latest known usage,
	// and the duration.
	Observer func(op string, status int, limit LimitInfo, dur time.Duration)
	// ConcurrentLimitPause is how long a REQUEST_LIMIT_EXCEEDED for concurrent
	// requests throttles (default 1m); DailyLimitPause is for the daily
	// TotalRequests limit (default 1h, the limit is a rolling 24h window).
	ConcurrentLimitPause time.Duration
	DailyLimitPause      time.Duration
	// Now is the clock for Throttled.Until (default time.Now).
	Now func() time.Time
}

// Client is safe for concurrent use.
type Client struct {
	cfg     Config
	version string
	hc      *http.Client

	mu   sync.Mutex
	last LimitInfo
}

// New returns a client. Missing optional settings get their defaults; a
// missing instance URL is reported per request (it may appear later).
func New(cfg Config) *Client {
	v := strings.TrimSpace(cfg.APIVersion)
	if v == "" {
		v = DefaultAPIVersion
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if cfg.ConcurrentLimitPause <= 0 {
		cfg.ConcurrentLimitPause = time.Minute
	}
	if cfg.DailyLimitPause <= 0 {
		cfg.DailyLimitPause = time.Hour
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{cfg: cfg, version: v, hc: hc}
}

// APIVersion returns the version used in request paths ("v62.0").
func (c *Client) APIVersion() string { return c.version }

// LastLimit returns the usage from the most recent Sforce-Limit-Info header
// seen by this client (zero until the first one).
func (c *Client) LastLimit() LimitInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

func (c *Client) instanceURL(ctx context.Context) (string, error) {
	switch {
	case c.cfg.InstanceURLSource != nil:
		return c.cfg.InstanceURLSource(ctx)
	case c.cfg.InstanceURLFunc != nil:
		return c.cfg.InstanceURLFunc(), nil
	}
	return c.cfg.InstanceURL, nil
}

// dataPath joins the REST base path with already-escaped segments.
func (c *Client) dataPath(segments ...string) string {
	return "/services/data/" + c.version + "/" + strings.Join(segments, "/")
}

// UpsertResult is the answer to a single upsert.
type UpsertResult struct {
	ID      string // empty when Salesforce answered 204 (older API versions)
	Created bool
}

// upsertBody is the success body of upserts and creates.
type upsertBody struct {
	ID      string      `json:"id"`
	Success *bool       `json:"success"`
	Created *bool       `json:"created"`
	Errors  []errorBody `json:"errors"`
}

// Upsert creates or updates the object whose extField equals extValue:
// PATCH /services/data/{v}/sobjects/{object}/{extField}/{extValue}.
// fields must not contain Id or extField (Salesforce refuses them there).
func (c *Client) Upsert(ctx context.Context, object, extField, extValue string, fields map[string]any) (UpsertResult, error) {
	op := fmt.Sprintf("salesforce upsert %s %s=%s", object, extField, extValue)
	if err := checkNames(op, object, extField); err != nil {
		return UpsertResult{}, err
	}
	if extValue == "" || extValue == "." || extValue == ".." {
		return UpsertResult{}, fault.Errorf(fault.Permanent, op, "external id value %q cannot be used in a path", extValue)
	}
	for k := range fields {
		if strings.EqualFold(k, "Id") || strings.EqualFold(k, extField) {
			return UpsertResult{}, fault.Errorf(fault.Permanent, op, "field %s must not be in the body of an upsert", k)
		}
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return UpsertResult{}, fault.Errorf(fault.Permanent, op, "encode fields: %w", err)
	}
	resp, err := c.do(ctx, request{
		op: OpUpsert, what: op, method: http.MethodPatch,
		path: c.dataPath("sobjects", object, extField, escapeSegment(extValue)),
		json: body,
	})
	if err != nil {
		return UpsertResult{}, err
	}
	if resp.status == http.StatusNoContent || len(bytes.TrimSpace(resp.body)) == 0 {
		return UpsertResult{Created: resp.status == http.StatusCreated}, nil
	}
	var ub upsertBody
	if err := json.Unmarshal(resp.body, &ub); err != nil {
		return UpsertResult{}, fault.Errorf(fault.Retryable, op, "decode answer (http %d): %w", resp.status, err)
	}
	res := UpsertResult{ID: ub.ID, Created: resp.status == http.StatusCreated}
	if ub.Created != nil {
		res.Created = *ub.Created
	}
	if ub.Success != nil && !*ub.Success {
		return res, c.recordError(op, ub.Errors)
	}
	return res, nil
}

// RecordResult is the outcome of one record of a collection upsert, in the
// order of the request's records.
type RecordResult struct {
	ID      string
	Created bool
	Success bool
	// Errors is what Salesforce said (statusCode in Code); Err is the same,
	// classified (a *fault.Error wrapping an *APIError), nil on success.
	Errors []APIError
	Err    error
}

type collectionRequest struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

// UpsertCollection upserts up to 200 records of one object by extField:
// PATCH /services/data/{v}/composite/sobjects/{object}/{extField}. The error
// is for the request as a whole; per-record failures are in the results.
// Records are not modified (attributes.type is added to copies).
func (c *Client) UpsertCollection(ctx context.Context, object, extField string, records []map[string]any, allOrNone bool) ([]RecordResult, error) {
	op := fmt.Sprintf("salesforce collection upsert %s by %s (%d records)", object, extField, len(records))
	if err := checkNames(op, object, extField); err != nil {
		return nil, err
	}
	if len(records) > MaxCollectionRecords {
		return nil, fault.Errorf(fault.Permanent, op, "at most %d records per request", MaxCollectionRecords)
	}
	if len(records) == 0 {
		return nil, nil
	}
	attrs := map[string]any{"type": object}
	payload := collectionRequest{AllOrNone: allOrNone, Records: make([]map[string]any, len(records))}
	for i, r := range records {
		cp := make(map[string]any, len(r)+1)
		for k, v := range r {
			cp[k] = v
		}
		cp["attributes"] = attrs
		payload.Records[i] = cp
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fault.Errorf(fault.Permanent, op, "encode records: %w", err)
	}
	resp, err := c.do(ctx, request{
		op: OpCollectionUpsert, what: op, method: http.MethodPatch,
		path: c.dataPath("composite", "sobjects", object, extField),
		json: body,
	})
	if err != nil {
		return nil, err
	}
	var answers []upsertBody
	if err := json.Unmarshal(resp.body, &answers); err != nil {
		return nil, fault.Errorf(fault.Retryable, op, "decode answer (http %d): %w", resp.status, err)
	}
	if len(answers) != len(records) {
		return nil, fault.Errorf(fault.Retryable, op, "got %d results for %d records", len(answers), len(records))
	}
	out := make([]RecordResult, len(answers))
	for i, a := range answers {
		r := RecordResult{ID: a.ID, Success: a.Success == nil || *a.Success}
		if a.Created != nil {
			r.Created = *a.Created
		}
		if len(a.Errors) > 0 {
			r.Success = false
		}
		if !r.Success {
			for _, e := range a.Errors {
				r.Errors = append(r.Errors, APIError{Code: e.code(), Message: e.Message, Fields: e.Fields})
			}
			rop := fmt.Sprintf("salesforce upsert %s %s=%v (record %d)", object, extField, records[i][extField], i)
			r.Err = c.recordError(rop, a.Errors)
		}
		out[i] = r
	}
	return out, nil
}

// request describes one HTTP exchange.
type request struct {
	op     string // observer operation
	what   string // fault.Error.Op
	method string
	path   string // absolute path on the instance, escaped
	query  url.Values
	json   []byte  // JSON body, replayable
	stream *stream // multipart body, replayable only if it can reopen its source
}

type response struct {
	status int
	body   []byte
}

// do runs one exchange: it records the limit header and calls the observer on
// every answer, and turns transport failures and non-2xx answers into
// classified errors.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	instance, err := c.instanceURL(ctx)
	if err != nil {
		return nil, fault.New(fault.ClassOf(err), r.what, err)
	}
	base := strings.TrimRight(strings.TrimSpace(instance), "/")
	if base == "" {
		return nil, fault.Errorf(fault.Reconnect, r.what, "no salesforce instance url: tenant not connected")
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fault.Errorf(fault.Permanent, r.what, "bad salesforce instance url %q", base)
	}
	target := base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, nil)
	if err != nil {
		return nil, fault.Errorf(fault.Permanent, r.what, "build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	switch {
	case r.json != nil:
		data := r.json
		req.Body = io.NopCloser(bytes.NewReader(data))
		req.ContentLength = int64(len(data))
		// Replayable: the transport may resend after refreshing the token.
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		req.Header.Set("Content-Type", "application/json")
	case r.stream != nil:
		body, err := r.stream.open()
		if err != nil {
			return nil, fault.New(fault.ClassOf(err), r.what, fmt.Errorf("open file content: %w", err))
		}
		req.Body = body
		req.ContentLength = -1
		req.GetBody = r.stream.getBody() // nil when the source cannot be reopened
		req.Header.Set("Content-Type", r.stream.contentType())
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.observe(r.op, 0, time.Since(start))
		if r.stream != nil {
			if serr := r.stream.sourceErr(); serr != nil {
				// The file's source failed (not Salesforce): keep its class.
				return nil, fault.New(fault.ClassOf(serr), r.what, fmt.Errorf("read file content: %w", serr))
			}
		}
		// The auth transport's own class (Reconnect when the grant is gone)
		// survives; anything else on the way is a transient network fault.
		return nil, fault.New(fault.ClassOf(err), r.what, scrubURL(err))
	}
	defer resp.Body.Close()
	c.noteLimit(resp.Header)
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.observe(r.op, resp.StatusCode, time.Since(start))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if rerr != nil {
			return nil, fault.Errorf(fault.Retryable, r.what, "read answer (http %d): %w", resp.StatusCode, scrubURL(rerr))
		}
		return &response{status: resp.StatusCode, body: data}, nil
	}
	return nil, c.responseError(r.what, resp.StatusCode, data)
}

func (c *Client) noteLimit(h http.Header) {
	l, ok := ParseLimitInfo(h.Get("Sforce-Limit-Info"))
	if !ok {
		return
	}
	c.mu.Lock()
	c.last = l
	c.mu.Unlock()
}

func (c *Client) observe(op string, status int, dur time.Duration) {
	if c.cfg.Observer != nil {
		c.cfg.Observer(op, status, c.LastLimit(), dur)
	}
}

// scrubURL drops the request URL from transport errors: it can carry a
// whole SOQL query or an external id, and says nothing the Op does not.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

var nameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)

// checkNames refuses object and field names that are not API names, so a
// value can never add path segments.
func checkNames(op string, names ...string) error {
	for _, n := range names {
		if !nameRe.MatchString(n) {
			return fault.Errorf(fault.Permanent, op, "%q is not a salesforce api name", n)
		}
	}
	return nil
}

// escapeSegment escapes one path segment, dots included: Salesforce reads a
// trailing ".xml"/".json"-like suffix of a value as a format.
func escapeSegment(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ".", "%2E")
}
