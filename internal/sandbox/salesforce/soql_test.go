package salesforce

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

func query(t *testing.T, s *Server, at, q string) apiResp {
	t.Helper()
	return call(t, s, at, "GET", v62+"/query?q="+url.QueryEscape(q), nil)
}

type queryRes struct {
	TotalSize int              `json:"totalSize"`
	Done      bool             `json:"done"`
	Records   []map[string]any `json:"records"`
}

func TestQuery(t *testing.T) {
	s, at := restServer(t, func(o *Options) {
		o.Objects = DefaultObjects()
		o.Objects["Strict__c"] = ObjectSpec{Fields: []string{"Name__c"}}
	})
	ids := map[string]string{}
	for _, p := range []struct{ pkg, status string }{{"P1", "SENT"}, {"P2", "COMPLETED"}, {"P3", "SENT"}, {"it's", "DRAFT"}} {
		ids[p.pkg] = mustID(t, upsertTx(t, s, at, p.pkg, map[string]any{"Status__c": p.status}))
	}
	call(t, s, at, "PATCH", v62+"/sobjects/OneSpan_Event__c/Event_Key__c/e1", map[string]any{"Event_Name__c": "A", "Transaction__r": map[string]any{"Package_Id__c": "P2"}})
	cvID := mustID(t, call(t, s, at, "POST", v62+"/sobjects/ContentVersion", map[string]any{"PathOnClient": "a.pdf",
		"VersionData": base64.StdEncoding.EncodeToString([]byte("x")), "FirstPublishLocationId": ids["P2"]}))

	cases := []struct {
		name string
		q    string
		want []string // Package_Id__c of the records, in order
	}{
		{"equality", "SELECT Id, Package_Id__c FROM OneSpan_Transaction__c WHERE Status__c = 'SENT'", []string{"P1", "P3"}},
		{"and", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Status__c = 'SENT' AND Package_Id__c = 'P3'", []string{"P3"}},
		{"in", "select package_id__c from onespan_transaction__c where Package_Id__c IN ('P2','P3', 'nope')", []string{"P2", "P3"}},
		{"not in", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Package_Id__c NOT IN ('P2','P3')", []string{"P1", "it's"}},
		{"not equal", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Status__c != 'SENT'", []string{"P2", "it's"}},
		{"text compares case-insensitively", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Status__c = 'sent'", []string{"P1", "P3"}},
		{"escaped quote", `SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Package_Id__c = 'it\'s'`, []string{"it's"}},
		{"limit", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Status__c = 'SENT' LIMIT 1", []string{"P1"}},
		{"order by desc", "SELECT Package_Id__c FROM OneSpan_Transaction__c ORDER BY Package_Id__c DESC LIMIT 2", []string{"P3", "P2"}},
		{"id with 15 chars", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Id = '" + ids["P2"][:15] + "'", []string{"P2"}},
		{"null", "SELECT Package_Id__c FROM OneSpan_Transaction__c WHERE Completed_At__c = null AND Status__c = 'COMPLETED'", []string{"P2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := query(t, s, at, c.q)
			var res queryRes
			r.decode(t, &res)
			var got []string
			for _, rec := range res.Records {
				got = append(got, rec["Package_Id__c"].(string))
			}
			if r.status != 200 || !res.Done || res.TotalSize != len(c.want) || strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("got %d %s, want %v", r.status, r.raw, c.want)
			}
		})
	}

	t.Run("record shape", func(t *testing.T) {
		r := query(t, s, at, "SELECT Id, Status__c FROM OneSpan_Transaction__c WHERE Package_Id__c = 'P1'")
		want := `{"totalSize":1,"done":true,"records":[{"attributes":{"type":"OneSpan_Transaction__c","url":"/services/data/v62.0/sobjects/OneSpan_Transaction__c/` + ids["P1"] + `"},"Id":"` + ids["P1"] + `","Status__c":"SENT"}]}`
		if r.raw != want {
			t.Fatalf("got  %s\nwant %s", r.raw, want)
		}
	})
	t.Run("relationship field", func(t *testing.T) {
		r := query(t, s, at, "SELECT Event_Name__c, Transaction__r.Package_Id__c, Transaction__r.Status__c FROM OneSpan_Event__c WHERE Transaction__r.Package_Id__c = 'P2'")
		if r.status != 200 || !strings.Contains(r.raw, `"Transaction__r":{"attributes":{"type":"OneSpan_Transaction__c","url":"/services/data/v62.0/sobjects/OneSpan_Transaction__c/`+ids["P2"]+`"},"Package_Id__c":"P2","Status__c":"COMPLETED"}`) {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("count", func(t *testing.T) {
		r := query(t, s, at, "SELECT COUNT() FROM OneSpan_Transaction__c WHERE Status__c = 'SENT'")
		if r.raw != `{"totalSize":2,"done":true,"records":[]}` {
			t.Fatalf("%s", r.raw)
		}
	})
	t.Run("content document of a version", func(t *testing.T) {
		r := query(t, s, at, "SELECT ContentDocumentId, VersionData FROM ContentVersion WHERE Id = '"+cvID+"'")
		var res queryRes
		r.decode(t, &res)
		if len(res.Records) != 1 || !strings.HasPrefix(res.Records[0]["ContentDocumentId"].(string), "069") ||
			res.Records[0]["VersionData"] != "/services/data/v62.0/sobjects/ContentVersion/"+cvID+"/VersionData" {
			t.Fatalf("%s", r.raw)
		}
		r = query(t, s, at, "SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '"+res.Records[0]["ContentDocumentId"].(string)+"' AND LinkedEntityId = '"+ids["P2"]+"'")
		if !strings.Contains(r.raw, `"totalSize":1`) {
			t.Fatalf("link: %s", r.raw)
		}
	})

	errCases := []struct{ q, code string }{
		{"", "MALFORMED_QUERY"},
		{"SELECT FROM OneSpan_Transaction__c", "MALFORMED_QUERY"},
		{"SELECT Id FROM OneSpan_Transaction__c WHERE", "MALFORMED_QUERY"},
		{"SELECT Id FROM OneSpan_Transaction__c WHERE Status__c = 'SENT' OR Status__c = 'X'", "MALFORMED_QUERY"},
		{"SELECT Id FROM OneSpan_Transaction__c WHERE Status__c = 'unterminated", "MALFORMED_QUERY"},
		{"SELECT Id FROM OneSpan_Transaction__c LIMIT x", "MALFORMED_QUERY"},
		{"SELECT Id FROM Nope__c", "INVALID_TYPE"},
		{"SELECT Other__c FROM Strict__c", "INVALID_FIELD"},
		{"SELECT Nope__r.Name FROM OneSpan_Event__c", "MALFORMED_QUERY"},
	}
	for _, c := range errCases {
		t.Run("error "+c.q, func(t *testing.T) {
			r := query(t, s, at, c.q)
			if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"`+c.code+`"`) {
				t.Fatalf("%d %s, want %s", r.status, r.raw, c.code)
			}
		})
	}
}
