package salesforce

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

var testNow = time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)

func classifyingClient() *Client {
	return New(Config{
		InstanceURL:          "https://example.my.salesforce.com",
		ConcurrentLimitPause: time.Minute,
		DailyLimitPause:      2 * time.Hour,
		Now:                  func() time.Time { return testNow },
	})
}

// recorded replays a Salesforce answer through a ResponseRecorder, the way it
// would arrive on the wire, and classifies it.
func recorded(t *testing.T, c *Client, status int, body string) *fault.Error {
	t.Helper()
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "application/json;charset=UTF-8")
	rec.WriteHeader(status)
	_, _ = io.WriteString(rec, body)
	resp := rec.Result()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return c.responseError("salesforce upsert OneSpan_Transaction__c Package_Id__c=pkg-1", resp.StatusCode, data)
}

// Wire bodies from shared/reference/salesforce.md §2.1, §2.3, §2.4, §3.1.
func TestResponseErrorsAreClassifiedLikeTheReferenceTable(t *testing.T) {
	lockRow := `[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]`
	cases := []struct {
		name   string
		status int
		body   string
		class  fault.Class
		code   string
		until  time.Duration // for Throttled
	}{
		{"session expired", 401, `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, fault.AuthExpired, "INVALID_SESSION_ID", 0},
		{"session not valid for rest", 401, `[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]`, fault.AuthExpired, "INVALID_SESSION_ID", 0},
		{"401 without body", 401, ``, fault.AuthExpired, "", 0},
		{"daily limit", 403, `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, fault.Throttled, "REQUEST_LIMIT_EXCEEDED", 2 * time.Hour},
		{"concurrent limit", 403, `[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, fault.Throttled, "REQUEST_LIMIT_EXCEEDED", time.Minute},
		{"limit without message", 403, `[{"errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, fault.Throttled, "REQUEST_LIMIT_EXCEEDED", time.Minute},
		{"429 from an edge", 429, `<html>slow down</html>`, fault.Throttled, "", time.Minute},
		{"lock row", 400, lockRow, fault.Retryable, "UNABLE_TO_LOCK_ROW", 0},
		{"500 unknown exception", 500, `[{"message":"An unexpected error occurred.","errorCode":"UNKNOWN_EXCEPTION"}]`, fault.Retryable, "UNKNOWN_EXCEPTION", 0},
		{"500 empty", 500, ``, fault.Retryable, "", 0},
		{"502 html", 502, `<html><body>Bad Gateway</body></html>`, fault.Retryable, "", 0},
		{"503", 503, `[{"message":"Server unavailable","errorCode":"SERVER_UNAVAILABLE"}]`, fault.Retryable, "SERVER_UNAVAILABLE", 0},
		{"504", 504, ``, fault.Retryable, "", 0},
		{"408", 408, ``, fault.Retryable, "", 0},
		{"duplicate", 400, `[{"message":"duplicate value found: Package_Id__c duplicates value on record with id: a01000000000001AAA","errorCode":"DUPLICATE_VALUE","fields":[]}]`, fault.Permanent, "DUPLICATE_VALUE", 0},
		{"invalid field", 400, `[{"message":"No such column 'Foo__c' on sobject of type OneSpan_Transaction__c","errorCode":"INVALID_FIELD"}]`, fault.Permanent, "INVALID_FIELD", 0},
		{"not found", 404, `[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]`, fault.Permanent, "NOT_FOUND", 0},
		{"not found as one object", 404, `{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}`, fault.Permanent, "NOT_FOUND", 0},
		{"multiple choices", 300, `["/services/data/v62.0/sobjects/OneSpan_Transaction__c/a01000000000001AAA","/services/data/v62.0/sobjects/OneSpan_Transaction__c/a01000000000002AAA"]`, fault.Permanent, "", 0},
		{"deleted", 400, `[{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED"}]`, fault.Permanent, "ENTITY_IS_DELETED", 0},
		{"required field", 400, `[{"message":"Required fields are missing: [Name]","errorCode":"REQUIRED_FIELD_MISSING","fields":["Name"]}]`, fault.Permanent, "REQUIRED_FIELD_MISSING", 0},
		{"cross reference", 400, `[{"message":"invalid cross reference id","errorCode":"INVALID_CROSS_REFERENCE_KEY"}]`, fault.Permanent, "INVALID_CROSS_REFERENCE_KEY", 0},
		{"validation rule", 400, `[{"message":"Status must be set","errorCode":"FIELD_CUSTOM_VALIDATION_EXCEPTION","fields":["Status__c"]}]`, fault.Permanent, "FIELD_CUSTOM_VALIDATION_EXCEPTION", 0},
		{"too long", 400, `[{"message":"data value too large","errorCode":"STRING_TOO_LONG","fields":["Message__c"]}]`, fault.Permanent, "STRING_TOO_LONG", 0},
		{"json parser", 400, `[{"message":"Unexpected character","errorCode":"JSON_PARSER_ERROR"}]`, fault.Permanent, "JSON_PARSER_ERROR", 0},
		{"malformed id", 400, `[{"message":"malformed id 123","errorCode":"MALFORMED_ID"}]`, fault.Permanent, "MALFORMED_ID", 0},
		{"malformed query", 400, `[{"message":"unexpected token: FORM","errorCode":"MALFORMED_QUERY"}]`, fault.Permanent, "MALFORMED_QUERY", 0},
		{"invalid type", 400, `[{"message":"sObject type 'Nope__c' is not supported.","errorCode":"INVALID_TYPE"}]`, fault.Permanent, "INVALID_TYPE", 0},
		{"unknown 403", 403, `[{"message":"insufficient access","errorCode":"INSUFFICIENT_ACCESS"}]`, fault.Permanent, "INSUFFICIENT_ACCESS", 0},
		{"unknown 4xx non-json", 418, `I'm a teapot`, fault.Permanent, "", 0},
		{"api disabled", 403, `[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]`, fault.Reconnect, "API_DISABLED_FOR_ORG", 0},
	}
	c := classifyingClient()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := recorded(t, c, tc.status, tc.body)
			if got := fault.ClassOf(err); got != tc.class {
				t.Fatalf("class = %v, want %v (%v)", got, tc.class, err)
			}
			if err.Code != tc.code || Code(err) != tc.code {
				t.Fatalf("code = %q / %q, want %q", err.Code, Code(err), tc.code)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("no APIError with status %d in %v", tc.status, err)
			}
			if tc.class == fault.Throttled {
				until, ok := fault.ThrottledUntil(err)
				if !ok || !until.Equal(testNow.Add(tc.until)) {
					t.Fatalf("until = %v, want now+%v", until, tc.until)
				}
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "salesforce upsert OneSpan_Transaction__c Package_Id__c=pkg-1") {
				t.Fatalf("message does not say what failed: %q", msg)
			}
		})
	}
}

func TestMultipleChoicesListsTheMatches(t *testing.T) {
	err := recorded(t, classifyingClient(), 300, `["/services/data/v62.0/sobjects/X__c/a01000000000001AAA","/services/data/v62.0/sobjects/X__c/a01000000000002AAA"]`)
	var ae *APIError
	if !errors.As(err, &ae) || len(ae.Matches) != 2 {
		t.Fatalf("matches not kept: %#v", ae)
	}
	if !strings.Contains(err.Error(), "several records") {
		t.Fatalf("message = %q", err.Error())
	}
}

func TestDailyLimitIsRecognisedFromTheUsageHeader(t *testing.T) {
	c := classifyingClient()
	c.last = LimitInfo{Used: 5000, Max: 5000}
	err := recorded(t, c, 403, `[{"message":"Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`)
	if until, _ := fault.ThrottledUntil(err); !until.Equal(testNow.Add(2 * time.Hour)) {
		t.Fatalf("until = %v, want the daily pause", until)
	}
}

func TestDuplicateRecordIDIsPulledFromTheMessage(t *testing.T) {
	err := recorded(t, classifyingClient(), 400,
		`[{"message":"duplicate value found: OneSpan_Document_Key__c duplicates value on record with id: 068000000000042AAA","errorCode":"DUPLICATE_VALUE","fields":[]}]`)
	id, ok := DuplicateRecordID(err)
	if !ok || id != "068000000000042AAA" {
		t.Fatalf("DuplicateRecordID = %q, %v", id, ok)
	}
	if _, ok := DuplicateRecordID(recorded(t, classifyingClient(), 400, `[{"message":"on record with id: 068000000000042AAA","errorCode":"INVALID_FIELD"}]`)); ok {
		t.Fatal("an id was pulled from a non-duplicate error")
	}
	if id, ok := ParseDuplicateID("duplicate value found: <unknown> duplicates value on record with id: <unknown>"); ok {
		t.Fatalf("ParseDuplicateID accepted a non-id %q", id)
	}
}

func TestRecordErrorsUseStatusCodeAndPreferPermanent(t *testing.T) {
	c := classifyingClient()
	cases := []struct {
		name  string
		errs  []errorBody
		class fault.Class
		code  string
	}{
		{"duplicate", []errorBody{{StatusCode: "DUPLICATE_VALUE", Message: "duplicate value found: Event_Key__c duplicates value on record with id: a02000000000001AAA"}}, fault.Permanent, "DUPLICATE_VALUE"},
		{"lock", []errorBody{{StatusCode: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access to this record"}}, fault.Retryable, "UNABLE_TO_LOCK_ROW"},
		{"rolled back", []errorBody{{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK", Message: "Record rolled back because not all records were valid and the request was using AllOrNone header"}}, fault.Retryable, "ALL_OR_NONE_OPERATION_ROLLED_BACK"},
		{"unknown code", []errorBody{{StatusCode: "SOMETHING_NEW", Message: "x"}}, fault.Permanent, "SOMETHING_NEW"},
		{"permanent wins", []errorBody{{StatusCode: "UNABLE_TO_LOCK_ROW"}, {StatusCode: "INVALID_FIELD", Fields: []string{"Foo__c"}}}, fault.Permanent, "INVALID_FIELD"},
		{"no errors", nil, fault.Retryable, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.recordError("salesforce upsert OneSpan_Event__c Event_Key__c=k (record 0)", tc.errs)
			if fault.ClassOf(err) != tc.class || Code(err) != tc.code {
				t.Fatalf("got %v %q, want %v %q (%v)", fault.ClassOf(err), Code(err), tc.class, tc.code, err)
			}
		})
	}
}

func TestClassifyFallsBackOnStatus(t *testing.T) {
	for status, want := range map[int]fault.Class{
		300: fault.Permanent, 400: fault.Permanent, 401: fault.AuthExpired, 403: fault.Permanent,
		404: fault.Permanent, 405: fault.Permanent, 409: fault.Permanent, 415: fault.Permanent,
		500: fault.Retryable, 502: fault.Retryable, 503: fault.Retryable, 504: fault.Retryable,
	} {
		if got := Classify(status, ""); got != want {
			t.Errorf("Classify(%d) = %v, want %v", status, got, want)
		}
	}
	if got := Classify(http.StatusBadRequest, CodeUnableToLockRow); got != fault.Retryable {
		t.Errorf("a known code must win over the status, got %v", got)
	}
}
