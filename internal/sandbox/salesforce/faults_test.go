package salesforce

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaultsFailBeforeCommit(t *testing.T) {
	cases := []struct {
		kind   FaultKind
		status int
		body   string
	}{
		{FaultUnavailable, 503, `"errorCode":"SERVER_UNAVAILABLE"`},
		{FaultLockRow, 400, `[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]`},
		{FaultInvalidSession, 401, `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`},
		{FaultConcurrentLimit, 403, `"errorCode":"REQUEST_LIMIT_EXCEEDED"`},
		{FaultServerError, 500, `"errorCode":"UNKNOWN_EXCEPTION"`},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			s, at := restServer(t, nil)
			s.FailNext("upsert", c.kind)
			// A call of another operation does not consume the queued fault.
			if r := call(t, s, at, "GET", v62+"/limits", nil); r.status != 200 {
				t.Fatalf("limits: %d", r.status)
			}
			r := upsertTx(t, s, at, "P1", map[string]any{"Status__c": "SENT"})
			if r.status != c.status || !strings.Contains(r.raw, c.body) {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, c.status, c.body)
			}
			if s.Count(ObjTransaction) != 0 {
				t.Fatal("a failed call committed")
			}
			if r := upsertTx(t, s, at, "P1", nil); r.status != 201 {
				t.Fatalf("next call: %d %s", r.status, r.raw)
			}
			if s.FaultsInjected()[c.kind] != 1 {
				t.Fatalf("injected %v", s.FaultsInjected())
			}
		})
	}
}

func TestCommitThenFail(t *testing.T) {
	s, at := restServer(t, nil)
	s.FailNext("upsert", FaultCommitThenUnavailable)
	if r := upsertTx(t, s, at, "P1", map[string]any{"Status__c": "SENT"}); r.status != 503 {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	if rec, ok := s.FindRecord(ObjTransaction, "Package_Id__c", "P1"); !ok || rec["Status__c"] != "SENT" {
		t.Fatal("commit-then-fail did not commit")
	}
	if r := upsertTx(t, s, at, "P1", map[string]any{"Status__c": "SENT"}); r.status != 200 {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}

	s.FailNext("upsert", FaultCommitThenReset)
	req, _ := http.NewRequest("PATCH", s.URL()+v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/P2", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+at)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("reset answered %d", resp.StatusCode)
	}
	if _, ok := s.FindRecord(ObjTransaction, "Package_Id__c", "P2"); !ok {
		t.Fatal("commit-then-reset did not commit")
	}

	// A file upload is committed too, so a retry meets DUPLICATE_VALUE.
	s.FailNext("content_version", FaultCommitThenUnavailable)
	entity := map[string]any{"PathOnClient": "a.pdf", "OneSpan_Document_Key__c": "P1/d"}
	if r, _ := uploadMultipart(t, s, at, entity, 1<<20); r.status != 503 {
		t.Fatalf("upload: %d", r.status)
	}
	if r, _ := uploadMultipart(t, s, at, entity, 1<<20); r.status != 400 || !strings.Contains(r.raw, "DUPLICATE_VALUE") {
		t.Fatalf("upload retry: %d %s", r.status, r.raw)
	}
}

func TestTimeoutFault(t *testing.T) {
	s, at := restServer(t, nil)
	s.FailNext("upsert", FaultTimeout)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest("PATCH", s.URL()+v62+"/sobjects/OneSpan_Transaction__c/Package_Id__c/P1", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+at)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("timeout answered %d", resp.StatusCode)
	}
	if s.Count(ObjTransaction) != 0 {
		t.Fatal("a timed-out call committed")
	}

	// A patient client is dropped after Hold.
	s.SetFaults(Faults{Hold: 100 * time.Millisecond})
	s.FailNext("", FaultTimeout)
	start := time.Now()
	if _, err := http.DefaultClient.Do(mustReq(t, s, at, "GET", v62+"/limits")); err == nil {
		t.Fatal("held call answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hold lasted %v", d)
	}
}

func mustReq(t *testing.T, s *Server, at, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+at)
	return req
}

func TestLockFaultsInCollections(t *testing.T) {
	s, at := restServer(t, func(o *Options) { o.Seed = 7 })
	path := v62 + "/composite/sobjects/OneSpan_Transaction__c/Package_Id__c"
	var recs []any
	for _, p := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		recs = append(recs, map[string]any{"attributes": map[string]any{"type": ObjTransaction}, "Package_Id__c": p})
	}
	s.FailNext("collection_upsert", FaultLockRow)
	r := call(t, s, at, "PATCH", path, map[string]any{"records": recs})
	var res []saveRes
	r.decode(t, &res)
	for _, x := range res {
		if x.Success || x.Errors[0].StatusCode != "UNABLE_TO_LOCK_ROW" {
			t.Fatalf("lock: %s", r.raw)
		}
	}
	if r.status != 200 || len(res) != len(recs) || s.Count(ObjTransaction) != 0 {
		t.Fatalf("lock: %d %s", r.status, r.raw)
	}

	s.FailNext("collection_upsert", FaultLockSomeRecords)
	r = call(t, s, at, "PATCH", path, map[string]any{"records": recs})
	r.decode(t, &res)
	ok, locked := 0, 0
	for _, x := range res {
		if x.Success {
			ok++
		} else if x.Errors[0].StatusCode == "UNABLE_TO_LOCK_ROW" {
			locked++
		}
	}
	if ok == 0 || locked == 0 || ok+locked != len(recs) || s.Count(ObjTransaction) != ok {
		t.Fatalf("partial lock: ok %d locked %d stored %d: %s", ok, locked, s.Count(ObjTransaction), r.raw)
	}
}

func TestRandomFaultsAreSeeded(t *testing.T) {
	run := func() []int {
		s, at := restServer(t, func(o *Options) { o.Seed = 42 })
		s.SetFaults(Faults{Rate: 0.5, Kinds: []FaultKind{FaultUnavailable, FaultLockRow}, Operations: []string{"limits"}})
		var out []int
		for i := 0; i < 40; i++ {
			out = append(out, call(t, s, at, "GET", v62+"/limits", nil).status)
		}
		// Operations outside the filter never fail.
		for i := 0; i < 10; i++ {
			if r := upsertTx(t, s, at, "P", nil); r.status >= 300 {
				t.Fatalf("upsert faulted: %d", r.status)
			}
		}
		return out
	}
	a, b := run(), run()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("same seed, different faults:\n%s\n%s", ja, jb)
	}
	counts := map[int]int{}
	for _, st := range a {
		counts[st]++
	}
	if counts[200] == 0 || counts[503] == 0 || counts[400] == 0 || counts[200]+counts[503]+counts[400] != 40 {
		t.Fatalf("statuses %v", counts)
	}
}

func TestAddedLatency(t *testing.T) {
	s, at := restServer(t, nil)
	s.SetFaults(Faults{Latency: 150 * time.Millisecond})
	start := time.Now()
	if r := call(t, s, at, "GET", v62+"/limits", nil); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("latency not added: %v", d)
	}
	s.ClearFaults()
	client := &http.Client{Timeout: 50 * time.Millisecond}
	s.SetFaults(Faults{Latency: 10 * time.Second})
	if _, err := client.Do(mustReq(t, s, at, "GET", v62+"/limits")); err == nil {
		t.Fatal("client should give up during latency")
	}
}
