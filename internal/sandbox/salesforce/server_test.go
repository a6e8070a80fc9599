package salesforce

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestServeStopsWithContext(t *testing.T) {
	s := New(testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, "127.0.0.1:0") }()
	deadline := time.Now().Add(5 * time.Second)
	for s.URL() == "" {
		if time.Now().After(deadline) {
			t.Fatal("never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	at, _ := s.IssueTokens("")
	if st, _ := restGet(t, s, at, v62+"/limits"); st != 200 {
		t.Fatalf("limits %d", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestMountedHandlerUsesRequestHost(t *testing.T) {
	s := New(testOptions())
	hs := httptest.NewServer(s)
	defer hs.Close()
	code := func() string {
		resp, err := noRedirect.Get(hs.URL + "/services/oauth2/authorize?" + url.Values{"response_type": {"code"}, "client_id": {"fake-client-id"}, "redirect_uri": {testRedirect}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return loc.Query().Get("code")
	}()
	resp, err := http.PostForm(hs.URL+"/services/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testRedirect}, "client_id": {"fake-client-id"}, "client_secret": {"fake-client-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	decodeJSON(t, resp, &body)
	if body["instance_url"] != hs.URL {
		t.Fatalf("instance_url %v, want %s", body["instance_url"], hs.URL)
	}
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
