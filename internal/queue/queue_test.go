package queue

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
)

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	d := config.Default()
	d.NATS.StoreDir = dir
	d.NATS.SyncAlways = false
	return Options{NATS: d.NATS, Queue: d.Queue}
}

func openT(t *testing.T, o Options) *Queue {
	t.Helper()
	q, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(q.Close)
	return q
}

func testEvent(t *testing.T, pkg string) (*callback.Event, []byte) {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":"PACKAGE_COMPLETE","sessionUser":"u1","packageId":%q,"message":null,"documentId":null,"createdDate":"2020-08-21T14:12:34.544Z"}`, pkg))
	ev, err := callback.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return ev, body
}

func publishT(t *testing.T, q *Queue, pkg string) Published {
	t.Helper()
	ev, body := testEvent(t, pkg)
	p, err := q.Publish(t.Context(), Callback{Tenant: "acme", Event: ev, Body: body, MsgID: ev.Key("acme"), Source: SourceCallback, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

// freePort finds a loopback port for an "external" server.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// modes runs one suite against both ways of reaching NATS: in-process
// embedded, and over TCP to a separate server as with a production cluster.
func modes(t *testing.T, fn func(t *testing.T, q *Queue)) {
	t.Run("embedded", func(t *testing.T) { fn(t, openT(t, testOptions(t, t.TempDir()))) })
	t.Run("external", func(t *testing.T) {
		srvOpts := testOptions(t, t.TempDir())
		port := freePort(t)
		srvOpts.NATS.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		openT(t, srvOpts) // plays the role of the cluster
		o := testOptions(t, "")
		o.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
		fn(t, openT(t, o))
	})
}

func TestQueueCreatesStreamsAndBuckets(t *testing.T) {
	modes(t, func(t *testing.T, q *Queue) {
		ctx := t.Context()
		for _, name := range []string{CallbacksStream, DeadLetterStream} {
			s, err := q.JetStream().Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			cfg := s.CachedInfo().Config
			if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.MaxAge != 720*time.Hour {
				t.Errorf("%s config = %+v", name, cfg)
			}
		}
		s, _ := q.JetStream().Stream(ctx, CallbacksStream)
		if got := s.CachedInfo().Config.Duplicates; got != 24*time.Hour {
			t.Errorf("duplicate window = %v", got)
		}
		for _, b := range []string{TokensBucket, PackagesBucket, TenantsBucket, OAuthBucket} {
			if _, err := q.JetStream().KeyValue(ctx, b); err != nil {
				t.Errorf("bucket %s: %v", b, err)
			}
		}
		if err := q.Ready(ctx); err != nil {
			t.Errorf("ready: %v", err)
		}
	})
}

func TestPublishStoresBodyAndHeadersAndDropsDuplicates(t *testing.T) {
	modes(t, func(t *testing.T, q *Queue) {
		ctx := t.Context()
		first := publishT(t, q, "LWsUTvGgE4WpOvaQPT16idnxNj8=")
		if first.Duplicate || first.Sequence != 1 {
			t.Fatalf("first publish = %+v", first)
		}
		again := publishT(t, q, "LWsUTvGgE4WpOvaQPT16idnxNj8=")
		if !again.Duplicate {
			t.Error("second publish of the same key was not a duplicate")
		}
		s, _ := q.JetStream().Stream(ctx, CallbacksStream)
		info, _ := s.Info(ctx)
		if info.State.Msgs != 1 {
			t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
		}
		m, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, body := testEvent(t, "LWsUTvGgE4WpOvaQPT16idnxNj8=")
		if string(m.Data) != string(body) {
			t.Errorf("body changed:\n%s\n%s", m.Data, body)
		}
		if m.Subject != "callbacks.acme.PACKAGE_COMPLETE" {
			t.Errorf("subject = %s", m.Subject)
		}
		for h, want := range map[string]string{HeaderPackage: "LWsUTvGgE4WpOvaQPT16idnxNj8=", HeaderSource: SourceCallback, "Nats-Msg-Id": mustKey(t)} {
			if got := m.Header.Get(h); got != want {
				t.Errorf("header %s = %q, want %q", h, got, want)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, m.Header.Get(HeaderReceivedAt)); err != nil {
			t.Errorf("received-at header: %v", err)
		}
	})
}

func mustKey(t *testing.T) string {
	ev, _ := testEvent(t, "LWsUTvGgE4WpOvaQPT16idnxNj8=")
	return ev.Key("acme")
}

func TestSubjectNeverTakesUnsafeNames(t *testing.T) {
	if got := Subject("acme", "A.B"); got != "callbacks.acme.OTHER" {
		t.Errorf("subject = %s", got)
	}
}

func TestRestartOnSameStoreDirKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir)
	o.NATS.SyncAlways = true
	q, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		publishT(t, q, fmt.Sprintf("pkg-%d", i))
	}
	q.Close()

	q2 := openT(t, o)
	s, err := q2.JetStream().Stream(t.Context(), CallbacksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	if info.State.Msgs != 20 {
		t.Fatalf("after restart the stream holds %d messages, want 20", info.State.Msgs)
	}
	// The dedup state survives too: the same callback is still a duplicate.
	if p := publishT(t, q2, "pkg-3"); !p.Duplicate {
		t.Error("a callback stored before the restart was stored again")
	}
}

func TestPublishFailsFastWhenServerIsGone(t *testing.T) {
	q := openT(t, testOptions(t, t.TempDir()))
	q.EmbeddedServer().Shutdown()
	q.EmbeddedServer().WaitForShutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ev, body := testEvent(t, "p")
	_, err := q.Publish(ctx, Callback{Tenant: "acme", Event: ev, Body: body, MsgID: "x", Source: SourceCallback, ReceivedAt: time.Now()})
	if err == nil {
		t.Fatal("publish succeeded with the server down")
	}
	if err := q.Ready(ctx); err == nil {
		t.Error("ready with the server down")
	}
}
