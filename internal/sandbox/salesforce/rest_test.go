package salesforce

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

const v62 = "/services/data/v62.0"

type apiResp struct {
	status int
	header http.Header
	raw    string
}

func (a apiResp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.raw), v); err != nil {
		t.Fatalf("decode %q: %v", a.raw, err)
	}
}

// restServer starts a sandbox and returns it with a live access token.
func restServer(t *testing.T, mutate func(*Options)) (*Server, string) {
	t.Helper()
	s := startServer(t, mutate)
	at, _ := s.IssueTokens("api refresh_token")
	return s, at
}

// call sends a REST request; body is a string (sent raw) or a value (JSON).
func call(t *testing.T, s *Server, token, method, path string, body any) apiResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, s.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return apiResp{status: resp.StatusCode, header: resp.Header, raw: strings.TrimSpace(string(raw))}
}

func upsertTx(t *testing.T, s *Server, at, pkg string, fields map[string]any) apiResp {
	t.Helper()
	if fields == nil {
		fields = map[string]any{}
	}
	return call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/"+url.PathEscape(pkg), fields)
}

var idRe = regexp.MustCompile(`^[0-9A-Za-z]{18}$`)

func TestUpsertCreatesThenUpdates(t *testing.T) {
	s, at := restServer(t, nil)
	pkg := "pkg/with+odd=chars"
	r := upsertTx(t, s, at, pkg, map[string]any{"Status__c": "SENT"})
	var res map[string]any
	r.decode(t, &res)
	id, _ := res["id"].(string)
	if r.status != 201 || !idRe.MatchString(id) || !strings.HasPrefix(id, "a0") {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	if want := fmt.Sprintf(`{"id":"%s","success":true,"errors":[],"created":true}`, id); r.raw != want {
		t.Fatalf("create body %s, want %s", r.raw, want)
	}
	r = upsertTx(t, s, at, pkg, map[string]any{"Status__c": "COMPLETED", "Completed_At__c": "2026-11-22T10:00:00.000Z"})
	if want := fmt.Sprintf(`{"id":"%s","success":true,"errors":[],"created":false}`, id); r.status != 200 || r.raw != want {
		t.Fatalf("update: %d %s", r.status, r.raw)
	}
	recs := s.Records(ObjTransaction)
	if len(recs) != 1 || recs[0]["Package_Id__c"] != pkg || recs[0]["Status__c"] != "COMPLETED" || recs[0]["Id"] != id {
		t.Fatalf("records %v", recs)
	}
	// External ids compare case-insensitively, like a default unique text field.
	if r := upsertTx(t, s, at, strings.ToUpper(pkg), map[string]any{"Status__c": "X"}); r.status != 200 {
		t.Fatalf("case-insensitive match: %d %s", r.status, r.raw)
	}
	if got := call(t, s, at, "GET", v62+"/sobjects/OneSpan_Transaction__c/"+id, nil); got.status != 200 || !strings.Contains(got.raw, `"Status__c":"X"`) {
		t.Fatalf("get by id: %d %s", got.status, got.raw)
	}
	if got := call(t, s, at, "GET", v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/"+url.PathEscape(pkg), nil); got.status != 200 {
		t.Fatalf("get by external id: %d %s", got.status, got.raw)
	}
}

func TestUpsertRejections(t *testing.T) {
	strict := func(o *Options) {
		o.Objects = DefaultObjects()
		o.Objects["Strict__c"] = ObjectSpec{ExternalIDs: []string{"Key__c"}, Fields: []string{"Name__c"}}
	}
	s, at := restServer(t, strict)
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"id in body", "/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", map[string]any{"Id": "a005g0000000001AAA"}, 400, "INVALID_FIELD", ""},
		{"external id in body", "/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", map[string]any{"Package_Id__c": "p1"}, 400, "INVALID_FIELD", ""},
		{"unknown object", "/sobjects/Nope__c/Key__c/p1", map[string]any{"A": "b"}, 404, "NOT_FOUND", ""},
		{"field is not an external id", "/sobjects/OneSpan_Transaction__c/Status__c/p1", map[string]any{"A": "b"}, 404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: Status__c"},
		{"unknown field on a strict object", "/sobjects/Strict__c/Key__c/k1", map[string]any{"Other__c": "b"}, 400, "INVALID_FIELD", "No such column 'Other__c' on sobject of type Strict__c"},
		{"read-only system field", "/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", map[string]any{"CreatedDate": "2020-01-01T00:00:00Z"}, 400, "INVALID_FIELD_FOR_INSERT_UPDATE", ""},
		{"malformed json", "/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", `{"Status__c":`, 400, "JSON_PARSER_ERROR", ""},
		{"unknown relationship", "/sobjects/OneSpan_Transaction__c/Package_Id__c/p1", map[string]any{"Account__r": map[string]any{"Key__c": "x"}}, 400, "INVALID_FIELD", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, s, at, "PATCH", v62+c.path, c.body)
			var errs []map[string]any
			r.decode(t, &errs)
			if r.status != c.status || len(errs) != 1 || errs[0]["errorCode"] != c.code || (c.msg != "" && errs[0]["message"] != c.msg) {
				t.Fatalf("got %d %s, want %d %s %q", r.status, r.raw, c.status, c.code, c.msg)
			}
		})
	}
	if n := s.Count(ObjTransaction); n != 0 {
		t.Fatalf("a rejected upsert left %d records", n)
	}
	if r := call(t, s, at, "PATCH", v62+"/sobjects/Strict__c/Key__c/k1", map[string]any{"name__c": "ok"}); r.status != 201 {
		t.Fatalf("declared field (any case): %d %s", r.status, r.raw)
	}
	if rec, _ := s.FindRecord("Strict__c", "Key__c", "K1"); rec["Name__c"] != "ok" {
		t.Fatalf("field name not canonicalized: %v", rec)
	}
}

func TestRelationshipByExternalID(t *testing.T) {
	s, at := restServer(t, nil)
	txID := mustID(t, upsertTx(t, s, at, "P1", map[string]any{"Status__c": "SENT"}))
	r := call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Event__c/Event_Key__c/e1",
		map[string]any{"Event_Name__c": "PACKAGE_ACTIVATE", "Transaction__r": map[string]any{"Package_Id__c": "P1"}})
	if r.status != 201 {
		t.Fatalf("event: %d %s", r.status, r.raw)
	}
	ev, ok := s.FindRecord(ObjEvent, "Event_Key__c", "e1")
	if !ok || ev["Transaction__c"] != txID || ev["Transaction__r"] != nil {
		t.Fatalf("event %v, want Transaction__c=%s", ev, txID)
	}
	r = call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Event__c/Event_Key__c/e2",
		map[string]any{"Transaction__r": map[string]any{"Package_Id__c": "missing"}})
	if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"INVALID_FIELD"`) || !strings.Contains(r.raw, "Foreign key external ID: missing not found for field Package_Id__c in entity OneSpan_Transaction__c") {
		t.Fatalf("unknown parent: %d %s", r.status, r.raw)
	}
	r = call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Event__c/Event_Key__c/e3", map[string]any{"Transaction__c": "a005g00000000ZZAAA"})
	if r.status != 400 {
		t.Fatalf("lookup to a missing id: %d %s", r.status, r.raw)
	}

	// The parent of a relationship is configurable (per-tenant object names).
	s2, at2 := restServer(t, func(o *Options) {
		o.Objects = map[string]ObjectSpec{
			"Deal__c":     {ExternalIDs: []string{"Ref__c"}},
			"Activity__c": {ExternalIDs: []string{"Key__c"}, Relationships: map[string]Relationship{"Deal__r": {Field: "Deal__c", Object: "Deal__c"}}},
		}
	})
	dealID := mustID(t, call(t, s2, at2, "PATCH", v62+"/sobjects/Deal__c/Ref__c/D1", map[string]any{}))
	call(t, s2, at2, "PATCH", v62+"/sobjects/Activity__c/Key__c/k", map[string]any{"Deal__r": map[string]any{"Ref__c": "D1"}})
	if rec, _ := s2.FindRecord("Activity__c", "Deal__c", dealID); rec == nil {
		t.Fatal("configured relationship not resolved")
	}
}

func mustID(t *testing.T, r apiResp) string {
	t.Helper()
	var res map[string]any
	r.decode(t, &res)
	id, _ := res["id"].(string)
	if id == "" {
		t.Fatalf("no id: %d %s", r.status, r.raw)
	}
	return id
}

type saveRes struct {
	ID      string `json:"id"`
	Success bool   `json:"success"`
	Created *bool  `json:"created"`
	Errors  []struct {
		StatusCode string   `json:"statusCode"`
		ErrorCode  string   `json:"errorCode"`
		Message    string   `json:"message"`
		Fields     []string `json:"fields"`
	} `json:"errors"`
}

func eventRec(key, pkg string) map[string]any {
	return map[string]any{"attributes": map[string]any{"type": ObjEvent}, "Event_Key__c": key, "Event_Name__c": "X",
		"Transaction__r": map[string]any{"Package_Id__c": pkg}}
}

func TestCollectionUpsert(t *testing.T) {
	s, at := restServer(t, nil)
	mustID(t, upsertTx(t, s, at, "P1", nil))
	mustID(t, call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Event__c/Event_Key__c/old", map[string]any{"Event_Name__c": "A"}))
	path := v62 + "/composite/sobjects/OneSpan_Event__c/Event_Key__c"

	r := call(t, s, at, "PATCH", path, map[string]any{"allOrNone": false, "records": []any{
		eventRec("new1", "P1"),
		eventRec("bad", "nope"),
		eventRec("old", "P1"),
		eventRec("dup", "P1"),
		eventRec("dup", "P1"),
		map[string]any{"attributes": map[string]any{"type": ObjEvent}, "Event_Name__c": "no key"},
	}})
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.raw)
	}
	if strings.Contains(r.raw, "errorCode") {
		t.Fatalf("per-record errors must use statusCode: %s", r.raw)
	}
	var res []saveRes
	r.decode(t, &res)
	want := []struct {
		success bool
		created bool
		code    string
	}{{true, true, ""}, {false, false, "INVALID_FIELD"}, {true, false, ""}, {false, false, "DUPLICATE_EXTERNAL_ID"}, {false, false, "DUPLICATE_EXTERNAL_ID"}, {false, false, "MISSING_ARGUMENT"}}
	if len(res) != len(want) {
		t.Fatalf("results %s", r.raw)
	}
	for i, w := range want {
		g := res[i]
		if g.Success != w.success || (w.success && (g.Created == nil || *g.Created != w.created || !idRe.MatchString(g.ID))) ||
			(!w.success && (len(g.Errors) != 1 || g.Errors[0].StatusCode != w.code || g.Errors[0].Fields == nil)) {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}
	if n := s.Count(ObjEvent); n != 2 {
		t.Fatalf("events = %d, want 2", n)
	}

	// allOrNone: one bad record rolls back the others.
	r = call(t, s, at, "PATCH", path, map[string]any{"allOrNone": true, "records": []any{eventRec("x1", "P1"), eventRec("x2", "nope"), eventRec("old", "P1")}})
	r.decode(t, &res)
	if r.status != 200 || res[0].Success || res[0].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" || res[1].Errors[0].StatusCode != "INVALID_FIELD" || res[2].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" {
		t.Fatalf("allOrNone: %s", r.raw)
	}
	if _, ok := s.FindRecord(ObjEvent, "Event_Key__c", "x1"); ok || s.Count(ObjEvent) != 2 {
		t.Fatal("allOrNone did not roll back")
	}
	if ev, _ := s.FindRecord(ObjEvent, "Event_Key__c", "old"); ev["Event_Name__c"] != "X" {
		t.Fatalf("the earlier non-atomic update was lost: %v", ev)
	}

	t.Run("more than 200 records", func(t *testing.T) {
		var recs []any
		for i := 0; i < 201; i++ {
			recs = append(recs, eventRec(fmt.Sprint("k", i), "P1"))
		}
		r := call(t, s, at, "PATCH", path, map[string]any{"records": recs})
		if r.status != 400 || !strings.Contains(r.raw, "EXCEEDED_ID_LIMIT") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("200 records pass", func(t *testing.T) {
		var recs []any
		for i := 0; i < 200; i++ {
			recs = append(recs, eventRec(fmt.Sprint("k", i), "P1"))
		}
		r := call(t, s, at, "PATCH", path, map[string]any{"records": recs})
		var res []saveRes
		r.decode(t, &res)
		if len(res) != 200 || !res[199].Success {
			t.Fatalf("%d %.200s", r.status, r.raw)
		}
	})
	t.Run("record without attributes.type", func(t *testing.T) {
		r := call(t, s, at, "PATCH", path, map[string]any{"records": []any{map[string]any{"Event_Key__c": "z"}}})
		if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"INVALID_TYPE"`) {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func TestCollectionCreateDuplicateValue(t *testing.T) {
	s, at := restServer(t, nil)
	first := mustID(t, upsertTx(t, s, at, "P1", nil))
	tx := func(pkg string) map[string]any {
		return map[string]any{"attributes": map[string]any{"type": ObjTransaction}, "Package_Id__c": pkg}
	}
	r := call(t, s, at, "POST", v62+"/composite/sobjects", map[string]any{"allOrNone": false, "records": []any{tx("P2"), tx("p1")}})
	var res []saveRes
	r.decode(t, &res)
	if r.status != 200 || len(res) != 2 || !res[0].Success || res[1].Success {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if e := res[1].Errors[0]; e.StatusCode != "DUPLICATE_VALUE" || e.Message != "duplicate value found: Package_Id__c duplicates value on record with id: "+first {
		t.Fatalf("duplicate error %+v", e)
	}
	// The single-record create answers the same error with errorCode.
	r = call(t, s, at, "POST", v62+"/sobjects/OneSpan_Transaction__c", map[string]any{"Package_Id__c": "P2"})
	if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"DUPLICATE_VALUE"`) {
		t.Fatalf("single create duplicate: %d %s", r.status, r.raw)
	}
}

func TestConcurrentUpsertsOfOneKeyMakeOneRecord(t *testing.T) {
	s, at := restServer(t, nil)
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = upsertTx(t, s, at, "same", map[string]any{"Status__c": fmt.Sprint(i)}).status
		}()
	}
	wg.Wait()
	created := 0
	for _, st := range statuses {
		if st == 201 {
			created++
		} else if st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	if created != 1 || s.Count(ObjTransaction) != 1 {
		t.Fatalf("created %d, records %d", created, s.Count(ObjTransaction))
	}
}

func TestLimitsHeaderAnd403(t *testing.T) {
	s, at := restServer(t, func(o *Options) { o.DailyRequestLimit = 5 })
	for i := 1; i <= 5; i++ {
		r := call(t, s, at, "GET", v62+"/limits", nil)
		if want := fmt.Sprintf("api-usage=%d/5", i); r.status != 200 || r.header.Get("Sforce-Limit-Info") != want {
			t.Fatalf("call %d: %d %q", i, r.status, r.header.Get("Sforce-Limit-Info"))
		}
		if i == 5 && !strings.Contains(r.raw, `"Remaining":0`) {
			t.Fatalf("limits body %s", r.raw)
		}
	}
	r := call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/p", map[string]any{})
	if r.status != 403 || r.raw != `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]` || r.header.Get("Sforce-Limit-Info") != "api-usage=5/5" {
		t.Fatalf("over limit: %d %s %q", r.status, r.raw, r.header.Get("Sforce-Limit-Info"))
	}
	if s.Count(ObjTransaction) != 0 {
		t.Fatal("a refused call wrote")
	}
	s.SetAPIUsage(1)
	if r := call(t, s, at, "GET", v62+"/limits", nil); r.status != 200 || r.header.Get("Sforce-Limit-Info") != "api-usage=2/5" {
		t.Fatalf("after SetAPIUsage: %d %q", r.status, r.header.Get("Sforce-Limit-Info"))
	}
	if used, limit := s.APIUsage(); used != 2 || limit != 5 {
		t.Fatalf("APIUsage %d/%d", used, limit)
	}
	// The versions list needs no session and carries no limit header.
	resp, err := http.Get(s.URL() + "/services/data/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Sforce-Limit-Info") != "" {
		t.Fatalf("versions: %d", resp.StatusCode)
	}
}

func TestCallCounters(t *testing.T) {
	s, at := restServer(t, nil)
	upsertTx(t, s, at, "p", nil)
	upsertTx(t, s, at, "p", nil)
	call(t, s, at, "GET", v62+"/query?q="+url.QueryEscape("SELECT Id FROM OneSpan_Transaction__c"), nil)
	call(t, s, "bad-token", "GET", v62+"/query?q=x", nil)
	call(t, s, at, "PATCH", v62+"/composite/sobjects/OneSpan_Transaction__c/Package_Id__c", map[string]any{"records": []any{}})
	got := s.CallCounts()
	if got["upsert"] != 2 || got["query"] != 2 || got["collection_upsert"] != 1 || s.Calls("content_version") != 0 {
		t.Fatalf("counts %v", got)
	}
	s.ResetCalls()
	if s.Calls("upsert") != 0 {
		t.Fatal("ResetCalls")
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	s, at := restServer(t, nil)
	if r := call(t, s, at, "GET", v62+"/nope", nil); r.status != 404 || !strings.Contains(r.raw, "NOT_FOUND") {
		t.Fatalf("unknown route %d %s", r.status, r.raw)
	}
	if r := call(t, s, at, "PUT", v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/p", map[string]any{}); r.status != 405 || !strings.Contains(r.raw, "METHOD_NOT_ALLOWED") {
		t.Fatalf("method %d %s", r.status, r.raw)
	}
	if r := call(t, s, at, "GET", "/services/data/latest/limits", nil); r.status != 404 {
		t.Fatalf("bad version %d", r.status)
	}
	if r := call(t, s, at, "GET", "/services/data/v47.0/limits", nil); r.status != 200 {
		t.Fatalf("any version: %d", r.status)
	}
}

func TestFieldTypes(t *testing.T) {
	s, at := restServer(t, nil)
	r := upsertTx(t, s, at, "P1", map[string]any{"Last_Event_At__c": "2026-11-22T10:00:00.5+01:00"})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if rec, _ := s.FindRecord(ObjTransaction, "Package_Id__c", "P1"); rec["Last_Event_At__c"] != "2026-11-22T09:00:00.500+0000" {
		t.Fatalf("datetime stored as %v", rec["Last_Event_At__c"])
	}
	cases := []struct {
		name string
		pkg  string
		body map[string]any
		code string
	}{
		{"datetime without T", "P2", map[string]any{"Completed_At__c": "2026-11-22 10:00:00"}, "JSON_PARSER_ERROR"},
		{"undeclared text field is free", "P2", map[string]any{"Status__c": "x"}, ""},
		{"external id over 255", strings.Repeat("p", 256), map[string]any{}, "STRING_TOO_LONG"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := upsertTx(t, s, at, c.pkg, c.body)
			if c.code == "" {
				if r.status >= 300 {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				return
			}
			if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"`+c.code+`"`) {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	cv := mustID(t, call(t, s, at, "POST", v62+"/sobjects/ContentVersion", map[string]any{"PathOnClient": "a.pdf", "VersionData": "eA=="}))
	if r := call(t, s, at, "PATCH", v62+"/sobjects/ContentVersion/"+cv, map[string]any{"VersionData": "eQ=="}); r.status != 400 || !strings.Contains(r.raw, "INVALID_FIELD_FOR_INSERT_UPDATE") {
		t.Fatalf("content update: %d %s", r.status, r.raw)
	}
	if r := call(t, s, at, "PATCH", v62+"/sobjects/ContentVersion/"+cv, map[string]any{"Title": "renamed"}); r.status != 204 {
		t.Fatalf("title update: %d %s", r.status, r.raw)
	}
}
