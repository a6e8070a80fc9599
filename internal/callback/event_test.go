package callback

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const captured = `{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":"PACKAGE_COMPLETE","sessionUser":"30ba8506-9819-46aa-a22d-c0114ba34cd0","packageId":"LWsUTvGgE4WpOvaQPT16idnxNj8=","message":null,"documentId":null,"createdDate":"2020-08-21T14:12:34.544Z"}`

func TestParseCapturedPayload(t *testing.T) {
	ev, err := Parse([]byte(captured))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name != PackageComplete || ev.PackageID != "LWsUTvGgE4WpOvaQPT16idnxNj8=" || ev.Doc() != "" || ev.Msg() != "" {
		t.Errorf("unexpected event %+v", ev)
	}
	want := time.Date(2020, 8, 21, 14, 12, 34, 544e6, time.UTC)
	if !ev.Created.Equal(want) {
		t.Errorf("created = %v, want %v", ev.Created, want)
	}
}

func TestParseAcceptsUnknownFieldsAndNames(t *testing.T) {
	body := `{"name":"SOMETHING_NEW","packageId":"p","createdDate":"2024-01-02T03:04:05Z","newRoleId":"r2","phone":"+1","selectedSupportBusinessHours":["9-5"],"futureField":{"x":1}}`
	ev, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if ev.NewRoleID != "r2" || Known(ev.Name) || Label(ev.Name) != Other || SubjectToken(ev.Name) != "SOMETHING_NEW" {
		t.Errorf("unexpected %+v", ev)
	}
}

func TestParseRejectsWithOneLineReason(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"empty":          {``, "body must be a JSON object"},
		"array":          {`[1]`, "body must be a JSON object"},
		"truncated":      {`{"name":"X"`, "malformed JSON"},
		"no name":        {`{"packageId":"p","createdDate":"2024-01-02T03:04:05Z"}`, "name is required"},
		"no package":     {`{"name":"X","createdDate":"2024-01-02T03:04:05Z"}`, "packageId is required"},
		"no date":        {`{"name":"X","packageId":"p"}`, "createdDate is required"},
		"bad date":       {`{"name":"X","packageId":"p","createdDate":"21/08/2020"}`, "is not an RFC 3339 time"},
		"name not str":   {`{"name":5,"packageId":"p","createdDate":"2024-01-02T03:04:05Z"}`, "field name must be a string"},
		"huge packageId": {`{"name":"X","packageId":"` + strings.Repeat("a", 300) + `","createdDate":"2024-01-02T03:04:05Z"}`, "at most 256 bytes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q does not say %q on one line", err, tc.want)
			}
		})
	}
}

func TestKeyCoversEveryField(t *testing.T) {
	base, _ := Parse([]byte(captured))
	k := base.Key("acme")
	if len(k) != 64 {
		t.Fatalf("key %q is not hex sha-256", k)
	}
	if k != base.Key("acme") {
		t.Error("key is not deterministic")
	}
	doc, msg := "doc1", "reason"
	variants := map[string]func(e *Event) string{
		"tenant":      func(e *Event) string { return e.Key("other") },
		"name":        func(e *Event) string { e.Name = "PACKAGE_DECLINE"; return e.Key("acme") },
		"package":     func(e *Event) string { e.PackageID = "x"; return e.Key("acme") },
		"sessionUser": func(e *Event) string { e.SessionUser = "u"; return e.Key("acme") },
		"documentId":  func(e *Event) string { e.DocumentID = &doc; return e.Key("acme") },
		"createdDate": func(e *Event) string { e.CreatedDate = "2020-08-21T14:12:34.545Z"; return e.Key("acme") },
		"message":     func(e *Event) string { e.Message = &msg; return e.Key("acme") },
	}
	for field, change := range variants {
		cp := *base
		if change(&cp) == k {
			t.Errorf("changing %s does not change the key", field)
		}
	}
}

func TestSubjectTokenNeverEscapes(t *testing.T) {
	for _, name := range []string{"a.b", "PACKAGE.>", "*", "lower", "", strings.Repeat("A", 65), "SP ACE"} {
		if got := SubjectToken(name); got != Other {
			t.Errorf("SubjectToken(%q) = %q, want OTHER", name, got)
		}
	}
}

func TestStatusTable(t *testing.T) {
	cases := []struct {
		event  string
		effect Effect
		status string
	}{
		{PackageCreate, SetStatus, StatusDraft},
		{PackageDeactivate, SetStatus, StatusDraft},
		{PackageActivate, SetStatus, StatusSent},
		{PackageComplete, SetStatus, StatusCompleted},
		{PackageDecline, SetStatus, StatusDeclined},
		{PackageOptOut, SetStatus, StatusOptedOut},
		{PackageExpire, SetStatus, StatusExpired},
		{PackageArchive, SetStatus, StatusArchived},
		{PackageTrash, SetStatus, StatusTrashed},
		{PackageDelete, SetStatus, StatusDeleted},
		{PackageRestore, Reread, ""},
		{DocumentSigned, LogOnly, ""},
		{"UNKNOWN_THING", LogOnly, ""},
	}
	for _, c := range cases {
		e, s := StatusFor(c.event)
		if e != c.effect || s != c.status {
			t.Errorf("StatusFor(%s) = %v %q, want %v %q", c.event, e, s, c.effect, c.status)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(captured))
	f.Add([]byte(`{"name":"X","packageId":"p","createdDate":"2024-01-02T03:04:05.123456789+02:00"}`))
	f.Add([]byte(`{"name":null}`))
	f.Add([]byte(`{"name":"A.B.>","packageId":"*","createdDate":"2024-01-02T03:04:05Z","message":"\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if ev.Name == "" || ev.PackageID == "" || ev.Created.IsZero() && ev.CreatedDate == "" {
			t.Fatalf("accepted an event without required fields: %+v", ev)
		}
		tok := SubjectToken(ev.Name)
		if strings.ContainsAny(tok, ".*> \t") {
			t.Fatalf("subject token %q escapes", tok)
		}
		if len(ev.Key("t")) != 64 {
			t.Fatal("bad key")
		}
	})
}
