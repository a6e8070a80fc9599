package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, installed by scripts/ensure-chromium.sh.
const chromiumPath = "/usr/bin/chromium"

// browserTab starts a headless Chromium with a fresh profile and returns
// a tab; screenshots go to the test's artifact directory.
type browserTab struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	n    int
}

func newBrowserTab(t *testing.T, base string) *browserTab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the admin page browser tests need Chromium at %s, which is missing: run scripts/ensure-chromium.sh as root "+
			"(apt-get install -y --no-install-recommends chromium)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	dir := t.ArtifactDir()
	t.Logf("screenshots in %s", dir)
	return &browserTab{t: t, ctx: ctx, base: base, dir: dir}
}

// do runs steps with a bound.
func (b *browserTab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\n%s", what, err, b.body())
	}
}

func eval[T any](b *browserTab, js string, opts ...chromedp.EvaluateOption) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
}

func (b *browserTab) body() string {
	s, _ := eval[string](b, `document.body ? document.body.innerText : ""`)
	return s
}

// waitFor polls a JavaScript predicate from Go, so it survives navigations.
func (b *browserTab) waitFor(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := eval[bool](b, js); err == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("timed out waiting for %s; page:\n%s", what, b.body())
}

func (b *browserTab) waitHeading(h1 string) {
	b.t.Helper()
	js, _ := json.Marshal(h1)
	b.waitFor("heading "+h1, fmt.Sprintf(`(document.querySelector("h1") || {}).textContent === %s`, js))
}

func (b *browserTab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// postStatus posts a form from the page with fetch and returns the status.
func (b *browserTab) postStatus(path, body string) int {
	b.t.Helper()
	js := fmt.Sprintf(`fetch(%q, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q, redirect: "manual"}).then(r => r.status)`, path, body)
	status, err := eval[int](b, js, chromedp.EvalAwaitPromise)
	if err != nil {
		b.t.Fatalf("fetch %s: %v", path, err)
	}
	return status
}

// The browser scenario: sign in, see a dead letter, replay it, see
// it delivered; CSRF-less and session-less posts refused.
func TestBrowserSignInReplayADeadLetterAndSeeItDelivered(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	r.breakEvents()
	r.start()
	r.activate("pkg-browser")
	r.eventually(15*time.Second, "2 dead letters", func() bool { return r.deadLetterCount() == 2 })
	r.stop()
	r.fixEvents() // the cause is fixed; the dead letters wait for the operator
	r.start()

	b := newBrowserTab(t, r.base)
	b.do("open the page", chromedp.Navigate(r.base+"/admin/"))
	b.waitHeading("Sign in")
	if loc, _ := eval[string](b, `location.pathname`); loc != "/admin/login" {
		t.Fatalf("without a session the page is %s", loc)
	}
	b.screenshot("sign-in")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("form.stack button")))
	b.waitHeading("Tenants and queues")
	b.waitFor("htmx", `typeof htmx !== "undefined" && document.body.getAttribute("hx-boost") === "true"`)
	b.screenshot("tenants")

	// Boosted by htmx: the link swaps the page and pushes the URL.
	b.do("dead letters", chromedp.Click(chromedp.CSS(`nav a[href="/admin/deadletters"]`)))
	b.waitHeading("Dead letters")
	b.waitFor("two dead letters", `document.querySelectorAll('tr[id^="dl-"]').length === 2`)
	if loc, _ := eval[string](b, `location.pathname`); loc != "/admin/deadletters" {
		t.Errorf("boosted navigation left the URL at %s", loc)
	}
	b.screenshot("dead-letters")
	eventHref, err := eval[string](b, `document.querySelector('tr[id^="dl-"] td:nth-child(2) a').getAttribute("href")`)
	if err != nil || !strings.HasPrefix(eventHref, "/admin/events/acme/") {
		t.Fatalf("event link %q %v", eventHref, err)
	}

	b.do("replay the first", chromedp.Click(chromedp.CSS(`tr[id^="dl-"] button`)))
	b.waitHeading("Confirm the replay")
	b.waitFor("the count", `document.querySelector(".count").textContent.includes("1 event will be replayed")`)
	if r.deadLetterCount() != 2 {
		t.Fatal("the confirmation page replayed already")
	}
	b.screenshot("confirm-replay")
	b.do("confirm", chromedp.Click(chromedp.CSS(`form[action="/admin/replay"] button`)))
	b.waitHeading("1 event replayed")
	b.screenshot("replayed")
	if n := r.deadLetterCount(); n != 1 {
		t.Fatalf("%d dead letters after replaying one", n)
	}

	// Its story shows the dead letter, then the replay delivered.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.do("event story", chromedp.Navigate(r.base+eventHref))
		b.waitFor("the story", `document.querySelectorAll("tbody tr").length > 0`)
		if ok, _ := eval[bool](b, `[...document.querySelectorAll(".outcome")].map(e => e.textContent).join(",") === "Dead-lettered,Delivered"`); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replayed event was not delivered:\n%s", b.body())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.screenshot("event-delivered")
	b.do("package", chromedp.Navigate(r.base+"/admin/packages?tenant=acme&package=pkg-browser"))
	b.waitHeading("Package pkg-browser")
	b.waitFor("status", `document.querySelector(".summary").textContent.includes("SENT")`)
	b.screenshot("package-story")
	b.do("tenant", chromedp.Navigate(r.base+"/admin/tenants/acme"))
	b.waitHeading("Tenant acme")
	b.screenshot("tenant")

	// A post without the session's token is refused, even from the page.
	csrf, err := eval[string](b, `document.querySelector('input[name="csrf"]').value`)
	if err != nil || csrf == "" {
		t.Fatalf("csrf field: %v", err)
	}
	if s := b.postStatus("/admin/replay", "tenant=acme&source=deadletters"); s != 403 {
		t.Errorf("post without csrf: %d", s)
	}
	if s := b.postStatus("/admin/replay", "tenant=acme&source=deadletters&csrf=fake-forged"); s != 403 {
		t.Errorf("post with a forged csrf: %d", s)
	}
	if s := b.postStatus("/admin/replay/preview", "tenant=acme&source=deadletters&csrf="+csrf); s != 200 {
		t.Errorf("post with the session's csrf: %d", s)
	}
	// Signed out, the old token opens nothing.
	b.do("sign out", chromedp.Click(chromedp.CSS(".signout button")))
	b.waitHeading("Sign in")
	if s := b.postStatus("/admin/replay", "tenant=acme&source=deadletters&csrf="+csrf); s != 403 {
		t.Errorf("post after sign-out: %d", s)
	}
	b.do("overview after sign-out", chromedp.Navigate(r.base+"/admin/"))
	b.waitHeading("Sign in")
	if n := r.deadLetterCount(); n != 1 {
		t.Errorf("refused posts changed the dead letters: %d", n)
	}
}
