package salesforce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// bearer adds the access token like the production transport does (minus
// the 401 refresh, which is not this package's concern).
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

type env struct {
	srv *sfsandbox.Server
	c   *Client
	obs *observed
}

// newEnv starts a sandbox org over real HTTP and a client holding a token
// minted by the sandbox.
func newEnv(t *testing.T, opts sfsandbox.Options) *env {
	t.Helper()
	srv := sfsandbox.NewTestServer(t, opts)
	access, _ := srv.IssueTokens("api refresh_token")
	if access == "" {
		t.Fatal("sandbox issued no access token")
	}
	obs := &observed{}
	c := New(Config{
		InstanceURL: srv.URL(),
		APIVersion:  "v62.0",
		HTTPClient:  &http.Client{Transport: bearer{token: access, base: http.DefaultTransport}, Timeout: 30 * time.Second},
		Observer:    obs.observe,
	})
	return &env{srv: srv, c: c, obs: obs}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUpsertCreatesThenUpdates(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	ctx := testCtx(t)
	first, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "pkg/with.dots-1", map[string]any{"Status__c": "SENT"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.ID == "" {
		t.Fatalf("first upsert = %+v, want created with an id", first)
	}
	second, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "pkg/with.dots-1", map[string]any{"Status__c": "COMPLETED"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Created || (second.ID != "" && second.ID != first.ID) {
		t.Fatalf("second upsert = %+v, want an update of %s", second, first.ID)
	}
	var rows []struct {
		ID     string `json:"Id"`
		Status string `json:"Status__c"`
	}
	if err := e.c.Query(ctx, "SELECT Id, Status__c FROM OneSpan_Transaction__c WHERE Package_Id__c = "+QuoteSOQL("pkg/with.dots-1"), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].ID != first.ID || rows[0].Status != "COMPLETED" {
		t.Fatalf("query = %+v", rows)
	}
	calls := e.obs.list()
	if len(calls) != 3 || calls[0].op != OpUpsert || calls[0].status != 201 || calls[2].op != OpQuery || calls[2].status != 200 {
		t.Fatalf("observer calls = %+v", calls)
	}
}

func TestUpsertToAMissingObjectIsPermanent(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	_, err := e.c.Upsert(testCtx(t), "Nope__c", "Ext__c", "x", map[string]any{"Name": "n"})
	if !fault.Is(err, fault.Permanent) {
		t.Fatalf("got %v, want permanent", err)
	}
	if Code(err) == "" {
		t.Fatalf("no errorCode kept: %v", err)
	}
}

func TestEveryAnswerUpdatesTheLimit(t *testing.T) {
	opts := sfsandbox.DefaultOptions()
	opts.DailyRequestLimit = 1000
	e := newEnv(t, opts)
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		if _, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", fmt.Sprint("pkg-", i), map[string]any{"Status__c": "SENT"}); err != nil {
			t.Fatal(err)
		}
	}
	l := e.c.LastLimit()
	if l.Max != 1000 || l.Used < 3 || l.Ratio() <= 0 {
		t.Fatalf("last limit = %+v", l)
	}
	for _, call := range e.obs.list() {
		if call.limit.Max != 1000 {
			t.Fatalf("observer got limit %+v", call.limit)
		}
	}
	// Error answers carry the header too.
	before := e.c.LastLimit().Used
	_, _ = e.c.Upsert(ctx, "Nope__c", "Ext__c", "x", nil)
	if after := e.c.LastLimit().Used; after <= before {
		t.Fatalf("error answer did not update the limit: %d -> %d", before, after)
	}
}

// eventObjects makes OneSpan_Event__c strict (unknown fields fail) and gives it
// a second unique field so a record can clash with another one.
func eventObjects() sfsandbox.Options {
	opts := sfsandbox.DefaultOptions()
	objs := sfsandbox.DefaultObjects()
	ev := objs["OneSpan_Event__c"]
	ev.ExternalIDs = append(ev.ExternalIDs, "Signature_Ref__c")
	ev.Fields = []string{"Event_Key__c", "Event_Name__c", "Signature_Ref__c", "Transaction__c"}
	objs["OneSpan_Event__c"] = ev
	opts.Objects = objs
	return opts
}

func TestCollectionUpsertReportsEachRecordInOrder(t *testing.T) {
	e := newEnv(t, eventObjects())
	ctx := testCtx(t)
	seeded, err := e.srv.Insert("OneSpan_Event__c", map[string]any{"Event_Key__c": "seeded", "Signature_Ref__c": "sig-1"})
	if err != nil {
		t.Fatal(err)
	}
	records := []map[string]any{
		{"Event_Key__c": "k0", "Event_Name__c": "PACKAGE_CREATE"},
		{"Event_Key__c": "k1", "Nope__c": "x"},
		{"Event_Key__c": "k2", "Signature_Ref__c": "sig-1"},
		{"Event_Key__c": "seeded", "Event_Name__c": "PACKAGE_SEND"},
	}
	res, err := e.c.UpsertCollection(ctx, "OneSpan_Event__c", "Event_Key__c", records, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	if r := res[0]; !r.Success || !r.Created || r.ID == "" || r.Err != nil {
		t.Fatalf("record 0 = %+v, want created", r)
	}
	if r := res[1]; r.Success || !fault.Is(r.Err, fault.Permanent) || Code(r.Err) != "INVALID_FIELD" || len(r.Errors) != 1 {
		t.Fatalf("record 1 = %+v, want a permanent INVALID_FIELD", r)
	}
	if r := res[2]; r.Success || !fault.Is(r.Err, fault.Permanent) || Code(r.Err) != CodeDuplicateValue {
		t.Fatalf("record 2 = %+v, want DUPLICATE_VALUE", r)
	}
	if id, ok := DuplicateRecordID(res[2].Err); !ok || id != seeded {
		t.Fatalf("duplicate id = %q, %v; want %s", id, ok, seeded)
	}
	if r := res[3]; !r.Success || r.Created || r.ID != seeded {
		t.Fatalf("record 3 = %+v, want an update of %s", r, seeded)
	}
	if !strings.Contains(res[1].Err.Error(), "OneSpan_Event__c Event_Key__c=k1 (record 1)") {
		t.Fatalf("record error does not say which record: %q", res[1].Err)
	}
	if _, ok := records[0]["attributes"]; ok {
		t.Fatal("the caller's record was modified")
	}
	if n := e.srv.Count("OneSpan_Event__c"); n != 2 {
		t.Fatalf("org holds %d events, want 2", n)
	}
}

func TestCollectionAllOrNoneRollsBackAsRetryable(t *testing.T) {
	e := newEnv(t, eventObjects())
	res, err := e.c.UpsertCollection(testCtx(t), "OneSpan_Event__c", "Event_Key__c", []map[string]any{
		{"Event_Key__c": "k0", "Event_Name__c": "PACKAGE_CREATE"},
		{"Event_Key__c": "k1", "Nope__c": "x"},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Success || !fault.Is(res[0].Err, fault.Retryable) || Code(res[0].Err) != "ALL_OR_NONE_OPERATION_ROLLED_BACK" {
		t.Fatalf("record 0 = %+v, want a retryable roll-back", res[0])
	}
	if !fault.Is(res[1].Err, fault.Permanent) {
		t.Fatalf("record 1 = %+v, want permanent", res[1])
	}
	if n := e.srv.Count("OneSpan_Event__c"); n != 0 {
		t.Fatalf("org holds %d events after a roll-back", n)
	}
}

func TestCollectionLockedRecordsAreRetryable(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	e.srv.FailNext(OpCollectionUpsert, sfsandbox.FaultLockRow)
	recs := make([]map[string]any, MaxCollectionRecords)
	for i := range recs {
		recs[i] = map[string]any{"Event_Key__c": fmt.Sprint("k", i)}
	}
	res, err := e.c.UpsertCollection(testCtx(t), "OneSpan_Event__c", "Event_Key__c", recs, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Success || !fault.Is(r.Err, fault.Retryable) || Code(r.Err) != CodeUnableToLockRow {
			t.Fatalf("record %d = %+v, want a retryable lock error", i, r)
		}
	}
}

func TestCollectionWithAKeyTwiceFailsThoseRecords(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	res, err := e.c.UpsertCollection(testCtx(t), "OneSpan_Event__c", "Event_Key__c", []map[string]any{
		{"Event_Key__c": "same"}, {"Event_Key__c": "other"}, {"Event_Key__c": "same"},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		if !fault.Is(res[i].Err, fault.Permanent) || Code(res[i].Err) != "DUPLICATE_EXTERNAL_ID" {
			t.Fatalf("record %d = %+v, want a permanent DUPLICATE_EXTERNAL_ID", i, res[i])
		}
	}
	if !res[1].Success {
		t.Fatalf("record 1 = %+v", res[1])
	}
}

func TestCollectionOfAnotherObjectFailsAsAWhole(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	_, err := e.c.UpsertCollection(testCtx(t), "OneSpan_Event__c", "Nope__c", []map[string]any{{"Nope__c": "x"}}, false)
	if !fault.Is(err, fault.Permanent) || Code(err) != CodeNotFound {
		t.Fatalf("got %v, want a permanent NOT_FOUND", err)
	}
}

func TestQueryErrorsArePermanent(t *testing.T) {
	e := newEnv(t, eventObjects())
	ctx := testCtx(t)
	var rows []map[string]any
	if err := e.c.Query(ctx, "SELEKT Id FROM Account", &rows); !fault.Is(err, fault.Permanent) || Code(err) != "MALFORMED_QUERY" {
		t.Fatalf("malformed: %v", err)
	}
	if err := e.c.Query(ctx, "SELECT Id FROM Nope__c", &rows); !fault.Is(err, fault.Permanent) || Code(err) != "INVALID_TYPE" {
		t.Fatalf("invalid type: %v", err)
	}
	if err := e.c.Query(ctx, "SELECT Nope__c FROM OneSpan_Event__c", &rows); !fault.Is(err, fault.Permanent) || Code(err) != "INVALID_FIELD" {
		t.Fatalf("invalid field: %v", err)
	}
}

func TestQueryWithQuotesFindsTheRecord(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	ctx := testCtx(t)
	key := `o'brien\pkg`
	res, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", key, map[string]any{"Status__c": "SENT"})
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := e.c.Query(ctx, "SELECT Id, Package_Id__c FROM OneSpan_Transaction__c WHERE Package_Id__c = "+QuoteSOQL(key), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["Id"] != res.ID || rows[0]["Package_Id__c"] != key {
		t.Fatalf("rows = %v", rows)
	}
	var none []map[string]any
	if err := e.c.Query(ctx, "SELECT Id FROM OneSpan_Transaction__c WHERE Package_Id__c = "+QuoteSOQL("nothing"), &none); err != nil || len(none) != 0 {
		t.Fatalf("empty query = %v, %v", none, err)
	}
}

func TestDailyLimitExhaustedIsThrottled(t *testing.T) {
	opts := sfsandbox.DefaultOptions()
	opts.DailyRequestLimit = 50
	e := newEnv(t, opts)
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	e.c.cfg.Now = func() time.Time { return now }
	e.srv.SetAPIUsage(50)
	_, err := e.c.Upsert(testCtx(t), "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
	if !fault.Is(err, fault.Throttled) || Code(err) != CodeRequestLimitExceeded {
		t.Fatalf("got %v, want throttled", err)
	}
	if until, _ := fault.ThrottledUntil(err); !until.Equal(now.Add(time.Hour)) {
		t.Fatalf("until = %v, want now + the daily pause", until)
	}
	if l := e.c.LastLimit(); l.Used != 50 || l.Max != 50 || l.Ratio() != 1 {
		t.Fatalf("last limit = %+v", l)
	}
	if calls := e.obs.list(); len(calls) != 1 || calls[0].status != 403 {
		t.Fatalf("observer = %+v", calls)
	}
}

func TestConcurrentLimitIsThrottledBriefly(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	e.c.cfg.Now = func() time.Time { return now }
	e.srv.FailNext(OpUpsert, sfsandbox.FaultConcurrentLimit)
	_, err := e.c.Upsert(testCtx(t), "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
	if !fault.Is(err, fault.Throttled) {
		t.Fatalf("got %v, want throttled", err)
	}
	if until, _ := fault.ThrottledUntil(err); !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("until = %v, want now + the concurrent pause", until)
	}
}

func TestServerFaultsAreRetryableAndRetriesAreIdempotent(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	kinds := []sfsandbox.FaultKind{
		sfsandbox.FaultUnavailable, sfsandbox.FaultServerError, sfsandbox.FaultLockRow,
		sfsandbox.FaultCommitThenUnavailable, sfsandbox.FaultCommitThenReset, sfsandbox.FaultTimeout,
	}
	e.srv.SetFaults(sfsandbox.Faults{Hold: 20 * time.Second})
	e.srv.FailNext(OpUpsert, kinds...)
	for _, k := range kinds {
		ctx := testCtx(t)
		if k == sfsandbox.FaultTimeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
		}
		_, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
		if !fault.Is(err, fault.Retryable) {
			t.Fatalf("%s: got %v, want retryable", k, err)
		}
		if k == sfsandbox.FaultTimeout && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("timeout: %v does not say deadline exceeded", err)
		}
	}
	res, err := e.c.Upsert(testCtx(t), "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created {
		t.Fatal("the retry created a record although a faulted call had committed one")
	}
	if n := e.srv.Count("OneSpan_Transaction__c"); n != 1 {
		t.Fatalf("org holds %d transactions, want 1", n)
	}
}

func TestInvalidSessionIsAuthExpired(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	e.srv.ExpireAccessTokens()
	_, err := e.c.Upsert(testCtx(t), "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "SENT"})
	if !fault.Is(err, fault.AuthExpired) || Code(err) != CodeInvalidSession {
		t.Fatalf("got %v, want auth expired", err)
	}
	if strings.Contains(strings.ToLower(err.Error()), "bearer") {
		t.Fatalf("error mentions the token: %v", err)
	}
}

// BenchmarkCollectionUpsert measures one 200-record collection upsert against
// the sandbox over loopback HTTP (encoding, transport and decoding).
func BenchmarkCollectionUpsert(b *testing.B) {
	srv := sfsandbox.NewTestServer(b, sfsandbox.DefaultOptions())
	access, _ := srv.IssueTokens("api refresh_token")
	c := New(Config{InstanceURL: srv.URL(), HTTPClient: &http.Client{Transport: bearer{token: access, base: http.DefaultTransport}}})
	recs := make([]map[string]any, MaxCollectionRecords)
	for i := range recs {
		recs[i] = map[string]any{"Event_Key__c": fmt.Sprintf("key-%03d", i), "Event_Name__c": "PACKAGE_ACTIVATE", "Message__c": "signed"}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.UpsertCollection(ctx, "OneSpan_Event__c", "Event_Key__c", recs, false)
		if err != nil || len(res) != len(recs) || !res[0].Success {
			b.Fatalf("%v %v", err, res)
		}
	}
}

// Salesforce answers at most 2,000 records a page; Query must gather them all.
// (The sandbox may answer in one page; the test holds either way.)
func TestQueryReturnsEveryRecordAcrossPages(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	const n = 2500
	for i := 0; i < n; i++ {
		if _, err := e.srv.Insert("OneSpan_Event__c", map[string]any{"Event_Key__c": fmt.Sprintf("k-%04d", i), "Event_Name__c": "PACKAGE_ACTIVATE"}); err != nil {
			t.Fatal(err)
		}
	}
	var rows []struct {
		ID  string `json:"Id"`
		Key string `json:"Event_Key__c"`
	}
	if err := e.c.Query(testCtx(t), "SELECT Id, Event_Key__c FROM OneSpan_Event__c WHERE Event_Name__c = 'PACKAGE_ACTIVATE'", &rows); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.Key] = true
	}
	if len(rows) != n || len(seen) != n {
		t.Fatalf("got %d rows (%d distinct), want %d", len(rows), len(seen), n)
	}
	t.Logf("%d records in %d query pages", n, e.srv.Calls(OpQuery))
}
