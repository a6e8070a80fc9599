package sfpush_test

import (
	"testing"
	"time"

	"github.com/countersign/countersign/internal/auth"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/sandbox/pipeline"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

func throttledUntil(t *testing.T, r *pipeline.Rig, tenant string) time.Time {
	t.Helper()
	st, _, err := auth.NewTenants(r.Queue.Tenants()).Get(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	return st.Throttle()
}

// A tenant whose org nears its daily API allocation pauses alone, so its last
// calls are not burnt; the other tenant keeps flowing.
func TestHighAPIUsagePausesTheTenantAlone(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{Tenants: []string{"acme", "beta"},
		Worker: func(w *config.Worker) { w.MaxAPIUsage = 0.5 }})
	acme, beta := r.Tenants["acme"], r.Tenants["beta"]
	acme.SF.SetDailyRequestLimit(1000)
	acme.SF.SetAPIUsage(600) // 60 % used: above worker.max_api_usage
	r.Start()
	acme.NewPackage(t, "pkg-usage-1")
	r.Eventually(10*time.Second, "acme throttled after its first batch", func() bool {
		return throttledUntil(t, r, "acme").After(time.Now())
	})
	if acme.Status("pkg-usage-1") != "DRAFT" {
		t.Errorf("the batch that revealed the usage was not delivered: %q", acme.Status("pkg-usage-1"))
	}
	acme.NewPackage(t, "pkg-usage-2")
	beta.NewPackage(t, "pkg-beta")
	r.Eventually(10*time.Second, "beta delivered", func() bool { return beta.Status("pkg-beta") == "DRAFT" })
	if acme.Transaction("pkg-usage-2") != nil {
		t.Error("acme kept calling Salesforce while its usage was over the limit")
	}
	if !throttledUntil(t, r, "beta").IsZero() {
		t.Error("beta was throttled too")
	}
}

// REQUEST_LIMIT_EXCEEDED pauses the tenant; its event waits in the queue
// instead of being retried into the limit or dead-lettered.
func TestRequestLimitExceededPausesWithoutLosingTheEvent(t *testing.T) {
	r := pipeline.New(t, pipeline.Options{})
	acme := r.Tenants["acme"]
	acme.SF.FailNext("collection_upsert", sfsandbox.FaultConcurrentLimit)
	r.Start()
	acme.NewPackage(t, "pkg-limit")
	r.Eventually(10*time.Second, "acme throttled", func() bool { return throttledUntil(t, r, "acme").After(time.Now()) })
	if n, _ := sfpush.DeadLetterCount(t.Context(), r.Queue.JetStream(), "acme"); n != 0 {
		t.Errorf("%d dead letters for a throttled tenant", n)
	}
	cons, err := r.Queue.JetStream().Consumer(t.Context(), queue.CallbacksStream, sfpush.ConsumerName("acme"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := cons.Info(t.Context())
	if info.NumPending+uint64(info.NumAckPending) == 0 {
		t.Error("the event is not waiting in the queue")
	}
}
