// Package callback is the OneSpan Sign callback: its payload, validation,
// event key, event names and what each name means for a transaction's status.
package callback

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Event is one OneSpan callback. Unknown fields are ignored: OneSpan adds
// fields and events over time, and the raw body is what gets stored anyway.
type Event struct {
	Class       string  `json:"@class,omitempty"`
	Name        string  `json:"name"`
	SessionUser string  `json:"sessionUser,omitempty"`
	PackageID   string  `json:"packageId"`
	Message     *string `json:"message"`
	DocumentID  *string `json:"documentId"`
	CreatedDate string  `json:"createdDate"`
	// ROLE_REASSIGN only.
	NewRoleID string `json:"newRoleId,omitempty"`
	// COBROWSE_REQUEST only.
	Phone                        string          `json:"phone,omitempty"`
	Comment                      string          `json:"comment,omitempty"`
	SelectedSupportBusinessHours json.RawMessage `json:"selectedSupportBusinessHours,omitempty"`

	// Created is CreatedDate parsed.
	Created time.Time `json:"-"`
}

// MaxFieldLen bounds the ids OneSpan documents as at most 255 characters
// (256 for documentId); the Salesforce fields they land in are text(255).
const MaxFieldLen = 256

// ErrInvalid is wrapped by every validation failure; its message is a
// one-line reason fit for a 400 answer.
var ErrInvalid = errors.New("invalid callback")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse decodes and validates a callback body.
func Parse(body []byte) (*Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, invalid("body must be a JSON object")
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, invalid("field %s must be a %s", te.Field, kindName(te.Type.Kind().String()))
		}
		return nil, invalid("malformed JSON")
	}
	if err := ev.validate(); err != nil {
		return nil, err
	}
	return &ev, nil
}

func kindName(k string) string {
	if k == "ptr" {
		return "string or null"
	}
	return k
}

func (ev *Event) validate() error {
	switch {
	case ev.Name == "":
		return invalid("name is required")
	case ev.PackageID == "":
		return invalid("packageId is required")
	case ev.CreatedDate == "":
		return invalid("createdDate is required")
	case len(ev.Name) > MaxFieldLen, len(ev.PackageID) > MaxFieldLen, len(ev.SessionUser) > MaxFieldLen,
		ev.DocumentID != nil && len(*ev.DocumentID) > MaxFieldLen:
		return invalid("name, packageId, sessionUser and documentId must be at most %d bytes", MaxFieldLen)
	}
	t, err := time.Parse(time.RFC3339Nano, ev.CreatedDate)
	if err != nil {
		return invalid("createdDate %q is not an RFC 3339 time", truncate(ev.CreatedDate, 40))
	}
	ev.Created = t
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Doc returns the document id or "" when OneSpan sent null.
func (ev *Event) Doc() string { return deref(ev.DocumentID) }

// Msg returns the message or "" when OneSpan sent null.
func (ev *Event) Msg() string { return deref(ev.Message) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Key is the event key of ARCHITECTURE §3: hex SHA-256 of
// tenant|name|packageId|sessionUser|documentId|createdDate|message. It is the
// JetStream Nats-Msg-Id, so a resent callback is stored once.
func (ev *Event) Key(tenant string) string {
	h := sha256.New()
	for i, part := range []string{tenant, ev.Name, ev.PackageID, ev.SessionUser, ev.Doc(), ev.CreatedDate, ev.Msg()} {
		if i > 0 {
			h.Write([]byte{'|'})
		}
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}

var subjectToken = regexp.MustCompile(`^[A-Z0-9_]{1,64}$`)

// SubjectToken is the <EVENT> token of the NATS subject: the name when it is
// safe, OTHER otherwise, so a callback can never choose a subject.
func SubjectToken(name string) string {
	if subjectToken.MatchString(name) {
		return name
	}
	return Other
}
