package salesforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/fault"
)

// APIError is what Salesforce said about a failed request or record. It is
// always returned wrapped in a *fault.Error (whose Code repeats Code), so
// callers branch on fault.ClassOf and dig here only for details.
type APIError struct {
	Status  int      // HTTP status; 0 for a per-record error inside a 200 collection answer
	Code    string   // errorCode (single resource) or statusCode (collection record)
	Message string   // Salesforce's message, verbatim
	Fields  []string // fields the error names, if any
	Matches []string // 300 Multiple Choices: the matching records' URLs
}

func (e *APIError) Error() string {
	var b strings.Builder
	if e.Status != 0 {
		fmt.Fprintf(&b, "http %d", e.Status)
	} else {
		b.WriteString("record rejected")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, " (fields %s)", strings.Join(e.Fields, ", "))
	}
	if len(e.Matches) > 0 {
		fmt.Fprintf(&b, " (%d matching records)", len(e.Matches))
	}
	return b.String()
}

// Error codes the client and its callers care about by name.
const (
	CodeInvalidSession       = "INVALID_SESSION_ID"
	CodeRequestLimitExceeded = "REQUEST_LIMIT_EXCEEDED"
	CodeUnableToLockRow      = "UNABLE_TO_LOCK_ROW"
	CodeDuplicateValue       = "DUPLICATE_VALUE"
	CodeNotFound             = "NOT_FOUND"
)

// codeClasses is THE classification table (shared/reference/salesforce.md §2.4).
// A code found here decides the class; otherwise Classify uses the status.
var codeClasses = map[string]fault.Class{
	CodeInvalidSession:       fault.AuthExpired,
	CodeRequestLimitExceeded: fault.Throttled,

	CodeUnableToLockRow:        fault.Retryable,
	"SERVER_UNAVAILABLE":       fault.Retryable,
	"UNKNOWN_EXCEPTION":        fault.Retryable, // Salesforce's own internal error (500)
	"QUERY_TIMEOUT":            fault.Retryable,
	"REQUEST_RUNNING_TOO_LONG": fault.Retryable,
	// With allOrNone, records that were fine themselves carry this code: they
	// would succeed once the bad record is fixed or removed.
	"ALL_OR_NONE_OPERATION_ROLLED_BACK": fault.Retryable,

	// The org as a whole refuses API calls: pause the tenant for an operator
	// instead of dead-lettering every event.
	"API_DISABLED_FOR_ORG":                    fault.Reconnect,
	"API_CURRENTLY_DISABLED":                  fault.Reconnect,
	"INVALID_OPERATION_WITH_EXPIRED_PASSWORD": fault.Reconnect,

	CodeDuplicateValue:                              fault.Permanent,
	"DUPLICATE_EXTERNAL_ID":                         fault.Permanent, // one key twice in one collection request
	"INVALID_FIELD":                                 fault.Permanent,
	CodeNotFound:                                    fault.Permanent,
	"ENTITY_IS_DELETED":                             fault.Permanent,
	"REQUIRED_FIELD_MISSING":                        fault.Permanent,
	"INVALID_CROSS_REFERENCE_KEY":                   fault.Permanent,
	"FIELD_CUSTOM_VALIDATION_EXCEPTION":             fault.Permanent,
	"STRING_TOO_LONG":                               fault.Permanent,
	"JSON_PARSER_ERROR":                             fault.Permanent,
	"MALFORMED_ID":                                  fault.Permanent,
	"MALFORMED_QUERY":                               fault.Permanent,
	"INVALID_TYPE":                                  fault.Permanent,
	"INVALID_FIELD_FOR_INSERT_UPDATE":               fault.Permanent,
	"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST":       fault.Permanent,
	"INSUFFICIENT_ACCESS_OR_READONLY":               fault.Permanent,
	"FIELD_INTEGRITY_EXCEPTION":                     fault.Permanent,
	"INVALID_ID_FIELD":                              fault.Permanent,
	"METHOD_NOT_ALLOWED":                            fault.Permanent,
	"INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": fault.Permanent,
}

// Classify returns the class of a Salesforce failure from its HTTP status
// (0 for a per-record error) and its errorCode/statusCode. This is the one
// place that decides; unknown codes fall back on the status.
func Classify(status int, code string) fault.Class {
	if c, ok := codeClasses[code]; ok {
		return c
	}
	switch {
	case status == 0:
		// A per-record error with a code we do not know: the record's data
		// was refused, and the same data will be refused again.
		return fault.Permanent
	case status == http.StatusUnauthorized:
		return fault.AuthExpired
	case status == http.StatusRequestTimeout:
		return fault.Retryable
	case status == http.StatusTooManyRequests:
		return fault.Throttled // Salesforce uses 403 for limits; an edge proxy may use 429
	case status >= 500:
		return fault.Retryable
	default:
		// 300 (external id matches several records), 400, 403, 404, 405, 409...
		return fault.Permanent
	}
}

// errorBody is one entry of a single-resource error answer.
type errorBody struct {
	Message    string   `json:"message"`
	ErrorCode  string   `json:"errorCode"`
	StatusCode string   `json:"statusCode"` // collections use this name
	Fields     []string `json:"fields"`
}

// parseErrorBody reads `[{"message","errorCode","fields"}]` and is lenient:
// a single object, an empty or non-JSON body, or a 300's list of URLs all
// give an APIError; the class then comes from the status alone.
func parseErrorBody(status int, body []byte) *APIError {
	ae := &APIError{Status: status}
	body = []byte(strings.TrimSpace(string(body)))
	if len(body) == 0 {
		return ae
	}
	var list []errorBody
	if err := json.Unmarshal(body, &list); err != nil {
		var one errorBody
		if err := json.Unmarshal(body, &one); err == nil {
			list = []errorBody{one}
		} else if status == http.StatusMultipleChoices {
			var urls []string
			if json.Unmarshal(body, &urls) == nil {
				ae.Matches = urls
				ae.Message = "external id matches several records"
			}
			return ae
		} else {
			ae.Message = truncate(string(body), 200)
			return ae
		}
	}
	if len(list) == 0 {
		if status == http.StatusMultipleChoices {
			ae.Message = "external id matches several records"
		}
		return ae
	}
	first := list[0]
	ae.Code = first.ErrorCode
	if ae.Code == "" {
		ae.Code = first.StatusCode
	}
	ae.Message = first.Message
	ae.Fields = first.Fields
	for _, more := range list[1:] {
		if more.Message != "" {
			ae.Message += "; " + more.Message
		}
	}
	return ae
}

// responseError classifies a non-2xx answer from its status and body.
func (c *Client) responseError(op string, status int, body []byte) *fault.Error {
	return c.classed(op, parseErrorBody(status, body), c.LastLimit())
}

// recordError builds the classified error of one collection record. When a
// record has several errors, a Permanent one wins: retrying cannot cure it.
func (c *Client) recordError(op string, errs []errorBody) *fault.Error {
	if len(errs) == 0 {
		return fault.Errorf(fault.Retryable, op, "record failed without an error")
	}
	pick := errs[0]
	for _, e := range errs {
		if Classify(0, e.code()) == fault.Permanent {
			pick = e
			break
		}
	}
	ae := &APIError{Code: pick.code(), Message: pick.Message, Fields: pick.Fields}
	return c.classed(op, ae, LimitInfo{})
}

func (e errorBody) code() string {
	if e.StatusCode != "" {
		return e.StatusCode
	}
	return e.ErrorCode
}

// classed wraps ae in a *fault.Error of its class, setting Until for Throttled.
func (c *Client) classed(op string, ae *APIError, limit LimitInfo) *fault.Error {
	fe := &fault.Error{Class: Classify(ae.Status, ae.Code), Op: op, Code: ae.Code, Err: ae}
	if fe.Class == fault.Throttled {
		fe.Until = c.now().Add(c.throttlePause(ae.Message, limit))
	}
	return fe
}

// throttlePause tells the concurrency limit (clears in seconds) from the daily
// one (rolling 24h): the message names it, or the usage header shows it spent.
func (c *Client) throttlePause(message string, limit LimitInfo) time.Duration {
	if strings.Contains(message, "TotalRequests") || (limit.Known() && limit.Used >= limit.Max) {
		return c.cfg.DailyLimitPause
	}
	return c.cfg.ConcurrentLimitPause
}

var duplicateIDRe = regexp.MustCompile(`(?i)duplicates value on record with id:\s*([a-zA-Z0-9]{15,18})`)

// DuplicateRecordID returns the id of the existing record named by a
// DUPLICATE_VALUE error ("... duplicates value on record with id: <id>"):
// the worker treats it as "already exists".
func DuplicateRecordID(err error) (string, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeDuplicateValue {
		return "", false
	}
	return ParseDuplicateID(ae.Message)
}

// ParseDuplicateID pulls the record id out of a DUPLICATE_VALUE message.
func ParseDuplicateID(message string) (string, bool) {
	m := duplicateIDRe.FindStringSubmatch(message)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Code returns the Salesforce error code carried by err, or "".
func Code(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
