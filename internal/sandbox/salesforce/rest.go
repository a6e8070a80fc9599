package salesforce

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// MaxCollectionRecords is the sObject Collections per-request record limit.
const MaxCollectionRecords = 200

// maxJSONBody bounds non-multipart bodies (Salesforce: 50 MB of text).
const maxJSONBody = 50 << 20

// apiError is one element of a REST error body (single-resource calls).
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

// statusError is one error inside a save result (collections, create).
type statusError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

// saveResult is Salesforce's SaveResult/UpsertResult.
type saveResult struct {
	ID      string        `json:"id,omitempty"`
	Success bool          `json:"success"`
	Errors  []statusError `json:"errors"`
	Created *bool         `json:"created,omitempty"`
}

var versionRe = regexp.MustCompile(`^v\d+\.\d$`)

// restCall is one routed REST request.
type restCall struct {
	op      string
	version string
	segs    []string // unescaped path segments after the version
	handle  func(w http.ResponseWriter, r *http.Request, c *restCall)
}

func (s *Server) handleREST(w http.ResponseWriter, r *http.Request) {
	segs, ok := splitPath(strings.TrimPrefix(r.URL.EscapedPath(), "/services/data"))
	if !ok {
		writeErrors(w, http.StatusNotFound, apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
		return
	}
	if len(segs) == 0 {
		s.countCall("versions")
		s.handleVersions(w, r)
		return
	}
	if !versionRe.MatchString(segs[0]) {
		writeErrors(w, http.StatusNotFound, apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
		return
	}
	c, allowed := s.route(r.Method, segs[1:])
	if c == nil && allowed == "" {
		writeErrors(w, http.StatusNotFound, apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
		return
	}
	if c == nil {
		w.Header().Set("Allow", allowed)
		writeErrors(w, http.StatusMethodNotAllowed, apiError{Message: fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are %s", r.Method, allowed), ErrorCode: "METHOD_NOT_ALLOWED"})
		return
	}
	c.version = segs[0]
	s.countCall(c.op)
	if !s.bearerValid(r) {
		writeErrors(w, http.StatusUnauthorized, apiError{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"})
		return
	}
	s.mu.Lock()
	if s.data.used >= s.data.limit {
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.data.used, s.data.limit))
		s.mu.Unlock()
		writeErrors(w, http.StatusForbidden, apiError{Message: "TotalRequests Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"})
		return
	}
	s.data.used++
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.data.used, s.data.limit))
	kind, latency, hold := s.faults.decide(c.op)
	s.mu.Unlock()
	if !s.wait(r, latency) {
		return
	}
	s.serveWithFault(w, r, c, kind, hold)
}

// route maps a method and path to an operation. When the path exists but not
// for this method it returns nil and the allowed methods.
func (s *Server) route(method string, p []string) (*restCall, string) {
	is := func(allowed string, ops map[string]string, h func(http.ResponseWriter, *http.Request, *restCall)) (*restCall, string) {
		if op, ok := ops[method]; ok {
			return &restCall{op: op, segs: p, handle: h}, ""
		}
		return nil, allowed
	}
	switch {
	case len(p) == 0:
		return is("GET", map[string]string{"GET": "resources"}, s.handleResources)
	case len(p) == 1 && p[0] == "limits":
		return is("GET", map[string]string{"GET": "limits"}, s.handleLimits)
	case len(p) == 1 && p[0] == "query":
		return is("GET", map[string]string{"GET": "query"}, s.handleQuery)
	case len(p) == 1 && p[0] == "sobjects":
		return is("GET", map[string]string{"GET": "describe_global"}, s.handleDescribeGlobal)
	case len(p) == 2 && p[0] == "sobjects":
		op := "create"
		if strings.EqualFold(p[1], ObjContentVersion) {
			op = "content_version"
		}
		return is("POST", map[string]string{"POST": op}, s.handleCreate)
	case len(p) == 3 && p[0] == "sobjects":
		return is("GET,PATCH,DELETE", map[string]string{"GET": "get", "PATCH": "update", "DELETE": "delete"}, s.handleRecord)
	case len(p) == 4 && p[0] == "sobjects" && strings.EqualFold(p[1], ObjContentVersion) && p[3] == "VersionData":
		return is("GET", map[string]string{"GET": "content_download"}, s.handleVersionData)
	case len(p) == 4 && p[0] == "sobjects":
		return is("GET,PATCH", map[string]string{"GET": "get", "PATCH": "upsert"}, s.handleUpsert)
	case len(p) == 2 && p[0] == "composite" && p[1] == "sobjects":
		return is("POST", map[string]string{"POST": "collection_create"}, s.handleCollectionCreate)
	case len(p) == 4 && p[0] == "composite" && p[1] == "sobjects":
		return is("PATCH", map[string]string{"PATCH": "collection_upsert"}, s.handleCollectionUpsert)
	}
	return nil, ""
}

// splitPath splits an escaped path into unescaped segments, so a value holding
// an encoded "/" stays one segment. A trailing slash is ignored.
func splitPath(escaped string) ([]string, bool) {
	escaped = strings.Trim(escaped, "/")
	if escaped == "" {
		return nil, true
	}
	raw := strings.Split(escaped, "/")
	out := make([]string, len(raw))
	for i, r := range raw {
		v, err := url.PathUnescape(r)
		if err != nil {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func (s *Server) countCall(op string) {
	s.mu.Lock()
	s.data.calls[op]++
	s.mu.Unlock()
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	type version struct {
		Label   string `json:"label"`
		URL     string `json:"url"`
		Version string `json:"version"`
	}
	labels := []string{"Winter '25", "Spring '25", "Summer '25", "Winter '26", "Spring '26", "Summer '26"}
	var out []version
	for i, l := range labels {
		v := fmt.Sprintf("%d.0", 62+i)
		out = append(out, version{Label: l, URL: "/services/data/v" + v, Version: v})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleResources(w http.ResponseWriter, r *http.Request, c *restCall) {
	base := "/services/data/" + c.version
	writeJSON(w, http.StatusOK, map[string]string{
		"sobjects": base + "/sobjects", "query": base + "/query", "limits": base + "/limits", "composite": base + "/composite",
	})
}

func (s *Server) handleLimits(w http.ResponseWriter, r *http.Request, c *restCall) {
	s.mu.Lock()
	used, limit := s.data.used, s.data.limit
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"DailyApiRequests": map[string]int{"Max": limit, "Remaining": max(limit-used, 0)}})
}

func (s *Server) handleDescribeGlobal(w http.ResponseWriter, r *http.Request, c *restCall) {
	s.mu.Lock()
	var objs []map[string]any
	for _, o := range s.data.objects {
		objs = append(objs, map[string]any{"name": o.name, "keyPrefix": o.prefix, "custom": strings.HasSuffix(o.name, "__c"),
			"urls": map[string]string{"sobject": "/services/data/" + c.version + "/sobjects/" + o.name}})
	}
	s.mu.Unlock()
	slices.SortFunc(objs, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	writeJSON(w, http.StatusOK, map[string]any{"encoding": "UTF-8", "maxBatchSize": MaxCollectionRecords, "sobjects": objs})
}

var errNoResource = &recordError{Code: "NOT_FOUND", Message: "The requested resource does not exist", Fields: []string{}}

// handleCreate is POST /sobjects/{Obj}; ContentVersion may be multipart.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, c *restCall) {
	o := s.objectOrNil(c.segs[1])
	if o == nil {
		drain(r)
		writeRecordError(w, errNoResource)
		return
	}
	if o.name == ObjContentVersion {
		s.handleContentVersion(w, r, o)
		return
	}
	body, err := decodeObject(r)
	if err != nil {
		writeRecordError(w, err)
		return
	}
	s.mu.Lock()
	tx := &txn{}
	id, rerr := s.createLocked(tx, o, body)
	if rerr != nil {
		tx.rollback()
	}
	s.mu.Unlock()
	if rerr != nil {
		writeRecordError(w, rerr)
		return
	}
	writeJSON(w, http.StatusCreated, saveResult{ID: id, Success: true, Errors: []statusError{}})
}

// createLocked validates and inserts one record of any object.
func (s *Server) createLocked(tx *txn, o *object, body map[string]any) (string, *recordError) {
	fields, err := s.data.prepareFields(o, body, "")
	if err != nil {
		return "", err
	}
	if o.name == ObjContentVersion {
		return s.createContentVersionLocked(tx, o, fields, nil)
	}
	return s.insertLocked(tx, o, fields)
}

// handleRecord is GET/PATCH/DELETE /sobjects/{Obj}/{Id}.
func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request, c *restCall) {
	o := s.objectOrNil(c.segs[1])
	if o == nil {
		writeRecordError(w, errNoResource)
		return
	}
	var body map[string]any
	if r.Method == http.MethodPatch {
		var err *recordError
		if body, err = decodeObject(r); err != nil {
			writeRecordError(w, err)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := canonicalID(c.segs[2])
	rec := o.records[id]
	if rec == nil {
		writeRecordError(w, errNoResource)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, recordJSON(o, rec, c.version))
	case http.MethodPatch:
		fields, err := s.data.prepareFields(o, body, "")
		if err == nil {
			err = s.updateLocked(nil, o, id, fields)
		}
		if err != nil {
			writeRecordError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		o.setIndex(rec, false)
		delete(o.records, id)
		o.order = slices.DeleteFunc(o.order, func(x string) bool { return x == id })
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleUpsert is PATCH (upsert) or GET /sobjects/{Obj}/{Field}/{value}.
func (s *Server) handleUpsert(w http.ResponseWriter, r *http.Request, c *restCall) {
	o := s.objectOrNil(c.segs[1])
	if o == nil {
		writeRecordError(w, errNoResource)
		return
	}
	field, value := c.segs[2], c.segs[3]
	if r.Method == http.MethodGet {
		s.mu.Lock()
		defer s.mu.Unlock()
		ext, ok := o.extIDs[strings.ToLower(field)]
		if !ok {
			writeRecordError(w, &recordError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: " + field})
			return
		}
		id, ok := o.index[ext][o.normKey(value)]
		if !ok {
			writeRecordError(w, errNoResource)
			return
		}
		writeJSON(w, http.StatusOK, recordJSON(o, o.records[id], c.version))
		return
	}
	body, err := decodeObject(r)
	if err != nil {
		writeRecordError(w, err)
		return
	}
	s.mu.Lock()
	tx := &txn{}
	id, created, rerr := s.upsertLocked(tx, o, field, value, body, false)
	if rerr != nil {
		tx.rollback()
	}
	s.mu.Unlock()
	if rerr != nil {
		writeRecordError(w, rerr)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, saveResult{ID: id, Success: true, Errors: []statusError{}, Created: &created})
}

type collectionRequest struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

func decodeCollection(w http.ResponseWriter, r *http.Request) (*collectionRequest, bool) {
	var req collectionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, apiError{Message: "Json Deserialization failed: " + err.Error(), ErrorCode: "JSON_PARSER_ERROR"})
		return nil, false
	}
	if len(req.Records) > MaxCollectionRecords {
		writeErrors(w, http.StatusBadRequest, apiError{Message: "record limit reached. cannot submit more than 200 records into this call", ErrorCode: "EXCEEDED_ID_LIMIT"})
		return nil, false
	}
	for _, rec := range req.Records {
		if recordType(rec) == "" {
			writeErrors(w, http.StatusBadRequest, apiError{Message: "Must send a concrete entity type.", ErrorCode: "INVALID_TYPE"})
			return nil, false
		}
	}
	return &req, true
}

func recordType(rec map[string]any) string {
	attrs, _ := rec["attributes"].(map[string]any)
	t, _ := attrs["type"].(string)
	return t
}

// handleCollectionUpsert is PATCH /composite/sobjects/{Obj}/{Field}.
func (s *Server) handleCollectionUpsert(w http.ResponseWriter, r *http.Request, c *restCall) {
	o := s.objectOrNil(c.segs[2])
	if o == nil {
		drain(r)
		writeRecordError(w, errNoResource)
		return
	}
	field := c.segs[3]
	req, ok := decodeCollection(w, r)
	if !ok {
		return
	}
	for _, rec := range req.Records {
		if !strings.EqualFold(recordType(rec), o.name) {
			writeErrors(w, http.StatusBadRequest, apiError{Message: fmt.Sprintf("Record type %s does not match the sObject type %s of the request", recordType(rec), o.name), ErrorCode: "INVALID_TYPE"})
			return
		}
	}
	s.mu.Lock()
	if _, ok := o.extIDs[strings.ToLower(field)]; !ok && !strings.EqualFold(field, "Id") {
		s.mu.Unlock()
		writeRecordError(w, &recordError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: " + field})
		return
	}
	// A key that appears twice in one request fails for every record holding it.
	keys := make([]any, len(req.Records))
	seen := map[string]int{}
	for i, rec := range req.Records {
		for k, v := range rec {
			if strings.EqualFold(k, field) {
				keys[i] = v
			}
		}
		if keys[i] != nil && keys[i] != "" {
			seen[o.normKey(keys[i])]++
		}
	}
	tx := &txn{}
	results := make([]saveResult, len(req.Records))
	failed := false
	locked := s.lockedRecords(r, len(req.Records))
	for i, rec := range req.Records {
		var rerr *recordError
		if locked != nil && locked[i] {
			rerr = errLockRow
		} else if keys[i] != nil && keys[i] != "" && seen[o.normKey(keys[i])] > 1 {
			rerr = &recordError{Code: "DUPLICATE_EXTERNAL_ID", Message: fmt.Sprintf("Duplicate external id specified: %v", keys[i]), Fields: []string{field}}
		} else if _, hasID := lookupKey(rec, "Id"); hasID && !strings.EqualFold(field, "Id") {
			rerr = &recordError{Code: "INVALID_FIELD", Message: "Id field should not be specified in the sobject data.", Fields: []string{}}
		} else {
			id, created, err := s.upsertLocked(tx, o, field, keys[i], rec, true)
			if err == nil {
				results[i] = saveResult{ID: id, Success: true, Errors: []statusError{}, Created: &created}
				continue
			}
			rerr = err
		}
		failed = true
		results[i] = failure(rerr)
	}
	if req.AllOrNone && failed {
		tx.rollback()
		rollBackResults(results)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, results)
}

// handleCollectionCreate is POST /composite/sobjects (mixed types allowed).
func (s *Server) handleCollectionCreate(w http.ResponseWriter, r *http.Request, c *restCall) {
	req, ok := decodeCollection(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs := make([]*object, len(req.Records))
	for i, rec := range req.Records {
		if objs[i] = s.data.object(recordType(rec)); objs[i] == nil {
			writeErrors(w, http.StatusBadRequest, apiError{Message: fmt.Sprintf("sObject type '%s' is not supported.", recordType(rec)), ErrorCode: "INVALID_TYPE"})
			return
		}
	}
	tx := &txn{}
	results := make([]saveResult, len(req.Records))
	failed := false
	locked := s.lockedRecords(r, len(req.Records))
	for i, rec := range req.Records {
		var id string
		var err *recordError
		if locked != nil && locked[i] {
			err = errLockRow
		} else {
			id, err = s.createLocked(tx, objs[i], rec)
		}
		if err != nil {
			failed = true
			results[i] = failure(err)
			continue
		}
		results[i] = saveResult{ID: id, Success: true, Errors: []statusError{}}
	}
	if req.AllOrNone && failed {
		tx.rollback()
		rollBackResults(results)
	}
	writeJSON(w, http.StatusOK, results)
}

func failure(e *recordError) saveResult {
	fields := e.Fields
	if fields == nil {
		fields = []string{}
	}
	return saveResult{Success: false, Errors: []statusError{{StatusCode: e.Code, Message: e.Message, Fields: fields}}}
}

func rollBackResults(results []saveResult) {
	for i := range results {
		if results[i].Success {
			results[i] = failure(&recordError{Code: "ALL_OR_NONE_OPERATION_ROLLED_BACK", Message: "Record rolled back because not all records were valid and the request was using AllOrNone header"})
		}
	}
}

func lookupKey(m map[string]any, key string) (any, bool) {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// decodeObject reads a JSON object body; numbers stay json.Number.
func decodeObject(r *http.Request) (map[string]any, *recordError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" {
			drain(r)
			return nil, &recordError{Code: "UNSUPPORTED_MEDIA_TYPE", Message: fmt.Sprintf("Content type '%s' not supported for this resource", mt)}
		}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil || body == nil {
		msg := "Json Deserialization failed"
		if err != nil {
			msg += ": " + err.Error()
		}
		drain(r)
		return nil, &recordError{Code: "JSON_PARSER_ERROR", Message: msg}
	}
	return body, nil
}

// drain consumes an unread body so the client's upload completes and it sees
// the answer rather than a reset.
func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

// recordJSON renders a record as Salesforce does: attributes first.
func recordJSON(o *object, rec Record, version string) orderedJSON {
	out := orderedJSON{{"attributes", map[string]string{"type": o.name, "url": "/services/data/" + version + "/sobjects/" + o.name + "/" + rec["Id"].(string)}}}
	out = append(out, kv{"Id", rec["Id"]})
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		if k != "Id" {
			out = append(out, kv{k, rec[k]})
		}
	}
	return out
}

type kv struct {
	k string
	v any
}

// orderedJSON is a JSON object that keeps its key order (select order in SOQL).
type orderedJSON []kv

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.k)
		v, err := json.Marshal(p.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, status int, errs ...apiError) {
	writeJSON(w, status, errs)
}

func writeRecordError(w http.ResponseWriter, e *recordError) {
	type withFields struct {
		Message   string   `json:"message"`
		ErrorCode string   `json:"errorCode"`
		Fields    []string `json:"fields"`
	}
	fields := e.Fields
	if fields == nil {
		fields = []string{}
	}
	writeJSON(w, e.httpStatus(), []withFields{{Message: e.Message, ErrorCode: e.Code, Fields: fields}})
}

// --- knobs and counters ---

// Calls returns how many REST calls of an operation were received (failed and
// faulted ones too): upsert, collection_upsert, collection_create, create,
// content_version, content_download, query, get, update, delete, limits.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.calls[op]
}

// CallCounts returns a copy of all per-operation REST call counters.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data.calls)
}

// ResetCalls zeroes the per-operation and token-endpoint counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.data.calls)
	clear(s.oauth.calls)
}

// SetAPIUsage sets the org's used API requests (the N of api-usage=N/M).
func (s *Server) SetAPIUsage(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.used = n
}

// SetDailyRequestLimit sets the org's API allocation (the M of api-usage=N/M).
func (s *Server) SetDailyRequestLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.limit = n
}

// APIUsage returns used and allowed API requests.
func (s *Server) APIUsage() (used, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.used, s.data.limit
}
