package onespan_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/onespan"
)

const fakeCallbackKey = "fake-callback-key-0123456789"

func desired(t *testing.T, events ...string) onespan.Desired {
	t.Helper()
	d, err := onespan.DesiredFor("https://listener.example.com/", "acme", []string{fakeCallbackKey, "fake-old-key"}, events)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDesiredForUsesTenantRouteFirstKeyAndAllEventsByDefault(t *testing.T) {
	d := desired(t)
	if d.URL != "https://listener.example.com/v1/callbacks/acme" || d.Key != fakeCallbackKey {
		t.Fatalf("desired = %s / key ok: %v", d.URL, d.Key == fakeCallbackKey)
	}
	if len(d.Events) != 22 || !slices.Contains(d.Events, "COBROWSE_REQUEST") || !slices.Contains(d.Events, "PACKAGE_READY_FOR_COMPLETE") {
		t.Fatalf("events = %v", d.Events)
	}
	if _, err := onespan.DesiredFor("https://x", "acme", nil, nil); err == nil || !strings.Contains(err.Error(), "callback_keys") {
		t.Fatalf("no key: %v", err)
	}
	if _, err := onespan.DesiredFor("listener.example.com", "acme", []string{"k"}, nil); err == nil {
		t.Fatal("relative public url accepted")
	}
}

func TestRegisterOnFreshAccountSetsEverything(t *testing.T) {
	sb, c := apiKeyClient(t)
	var out bytes.Buffer
	want := desired(t)
	if _, err := onespan.Register(context.Background(), c, want, false, &out); err != nil {
		t.Fatal(err)
	}
	url, key, events := sb.Callback()
	if url != want.URL || key != fakeCallbackKey || len(events) != 22 {
		t.Fatalf("registered %s, key ok %v, %d events", url, key == fakeCallbackKey, len(events))
	}
	s := out.String()
	for _, w := range []string{"url:    (not set) -> https://listener.example.com/v1/callbacks/acme", "key:    not set -> set", "events: add ", "updated"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	assertNoKey(t, s)
}

func TestRegisterWhenAlreadyCorrectSendsNothing(t *testing.T) {
	sb, c := apiKeyClient(t)
	want := desired(t)
	sb.SetCallback(want.URL, want.Key, want.Events)
	var out bytes.Buffer
	d, err := onespan.Register(context.Background(), c, want, false, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !d.InSync() || sb.CallbackPosts() != 0 {
		t.Fatalf("in sync %v, posts %d: want no POST", d.InSync(), sb.CallbackPosts())
	}
	if !strings.Contains(out.String(), "nothing to do") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestRegisterFixesADriftedRegistration(t *testing.T) {
	sb, c := apiKeyClient(t)
	want := desired(t, "PACKAGE_COMPLETE", "PACKAGE_DECLINE", "DOCUMENT_SIGNED")
	sb.SetCallback("https://old.example.com/hook", "fake-stale-key", []string{"PACKAGE_COMPLETE", "EMAIL_BOUNCE"})
	var out bytes.Buffer
	d, err := onespan.Register(context.Background(), c, want, false, &out)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, w := range []string{
		"url:    https://old.example.com/hook -> https://listener.example.com/v1/callbacks/acme",
		"key:    differs -> replaced",
		"events: add DOCUMENT_SIGNED, PACKAGE_DECLINE",
		"events: remove EMAIL_BOUNCE",
		"callback registration updated",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	assertNoKey(t, s)
	if d.InSync() {
		t.Fatal("returned diff should describe what was changed")
	}
	url, key, events := sb.Callback()
	slices.Sort(events)
	if url != want.URL || key != fakeCallbackKey || strings.Join(events, ",") != "DOCUMENT_SIGNED,PACKAGE_COMPLETE,PACKAGE_DECLINE" {
		t.Fatalf("after register: %s key ok %v events %v", url, key == fakeCallbackKey, events)
	}
	out.Reset()
	if d, err := onespan.Status(context.Background(), c, want, &out); err != nil || !d.InSync() {
		t.Fatalf("status after register: %v\n%s", err, out.String())
	}
}

func TestRegisterDryRunChangesNothing(t *testing.T) {
	sb, c := apiKeyClient(t)
	sb.SetCallback("https://old.example.com/hook", "fake-stale-key", []string{"PACKAGE_COMPLETE"})
	var out bytes.Buffer
	if _, err := onespan.Register(context.Background(), c, desired(t), true, &out); err != nil {
		t.Fatal(err)
	}
	url, key, events := sb.Callback()
	if sb.CallbackPosts() != 0 || url != "https://old.example.com/hook" || key != "fake-stale-key" || len(events) != 1 {
		t.Fatalf("dry run changed the registration: posts %d, url %s", sb.CallbackPosts(), url)
	}
	s := out.String()
	if !strings.Contains(s, "dry run: nothing changed") || !strings.Contains(s, "url:    https://old.example.com/hook ->") {
		t.Fatalf("output:\n%s", s)
	}
	assertNoKey(t, s)
}

func TestStatusReportsEachMismatchWithoutTheKey(t *testing.T) {
	want := desired(t, "PACKAGE_COMPLETE", "PACKAGE_DECLINE")
	for _, tc := range []struct {
		name          string
		url, key      string
		events        []string
		want, notWant []string
	}{
		{"in sync", want.URL, fakeCallbackKey, []string{"PACKAGE_DECLINE", "PACKAGE_COMPLETE"},
			[]string{"key:    matches", "status: matches"}, []string{"missing", "extra", "differs"}},
		{"wrong url", "https://elsewhere.example.com/x", fakeCallbackKey, want.Events,
			[]string{"url:    https://elsewhere.example.com/x", "differs, want https://listener.example.com/v1/callbacks/acme", "out of sync"}, nil},
		{"wrong key", want.URL, "fake-other-key", want.Events, []string{"key:    differs", "out of sync"}, nil},
		{"key not set", want.URL, "", want.Events, []string{"key:    not set", "out of sync"}, nil},
		{"missing events", want.URL, fakeCallbackKey, []string{"PACKAGE_COMPLETE"}, []string{"missing: PACKAGE_DECLINE"}, []string{"extra"}},
		{"extra events", want.URL, fakeCallbackKey, []string{"PACKAGE_COMPLETE", "PACKAGE_DECLINE", "KBA_FAILURE", "EMAIL_BOUNCE"},
			[]string{"extra:   EMAIL_BOUNCE, KBA_FAILURE"}, []string{"missing"}},
		{"nothing registered", "", "", nil, []string{"url:    (not set)", "key:    not set", "missing: PACKAGE_COMPLETE, PACKAGE_DECLINE"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, c := apiKeyClient(t)
			if tc.url != "" || tc.key != "" || tc.events != nil {
				sb.SetCallback(tc.url, tc.key, tc.events)
			}
			var out bytes.Buffer
			if _, err := onespan.Status(context.Background(), c, want, &out); err != nil {
				t.Fatal(err)
			}
			s := out.String()
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("output lacks %q:\n%s", w, s)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(s, w) {
					t.Errorf("output has %q:\n%s", w, s)
				}
			}
			assertNoKey(t, s)
			if strings.Contains(s, "fake-other-key") {
				t.Fatalf("output shows the registered key:\n%s", s)
			}
			if sb.CallbackPosts() != 0 {
				t.Fatal("status changed the registration")
			}
		})
	}
}

func TestSandboxRefusesBadRegistrations(t *testing.T) {
	_, c := apiKeyClient(t)
	ctx := context.Background()
	for _, cb := range []onespan.Callback{
		{URL: "/relative", Key: "k", Events: []string{"PACKAGE_COMPLETE"}},
		{URL: "ftp://x.example.com/", Key: "k", Events: []string{"PACKAGE_COMPLETE"}},
		{URL: "https://x.example.com/", Key: "k", Events: []string{"PACKAGE_READY_FOR_COMPLETION"}},
	} {
		err := c.SetCallback(ctx, cb)
		if !fault.Is(err, fault.Permanent) || onespan.StatusCode(err) != 400 {
			t.Errorf("SetCallback(%s): got %v", cb, err)
		}
	}
}

func TestCallbackStringHidesKey(t *testing.T) {
	s := onespan.Callback{URL: "https://x", Key: fakeCallbackKey, Events: []string{"A"}}.String()
	if strings.Contains(s, fakeCallbackKey) || !strings.Contains(s, "key: set") {
		t.Fatal(s)
	}
}

func assertNoKey(t *testing.T, s string) {
	t.Helper()
	for _, k := range []string{fakeCallbackKey, "fake-stale-key", "fake-old-key"} {
		if strings.Contains(s, k) {
			t.Fatalf("output contains a callback key:\n%s", s)
		}
	}
}
