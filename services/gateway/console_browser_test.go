package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// destMuenchen serves the Landeshauptstadt München, a Kreis of Bayern.
const destMuenchen = "80000000-0000-4000-8000-000000009162"

// chromium returns Debian's Chromium, skipping the test where it is
// absent unless CI is set, where its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it with apt-get install chromium")
	}
	t.Skip("chromium is not installed (apt-get install chromium); the console's browser test needs it")
	return ""
}

// browser starts a headless Chromium with a fresh profile and records
// every console error, uncaught exception and error log entry (failed
// loads, Content-Security-Policy violations) of its pages.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	}
	// The test binary's -timeout bounds a browser that hangs; a loaded
	// machine with -race may take minutes for what takes seconds.
	ctx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	t.Cleanup(cancelBrowser)

	var mu sync.Mutex
	var errs []string
	record := func(msg string) {
		mu.Lock()
		errs = append(errs, msg)
		mu.Unlock()
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type != "error" && ev.Type != "assert" {
				return
			}
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			record("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			record("exception: " + msg)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == "error" {
				record("log (" + string(ev.Entry.Source) + "): " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// screenshotDir is where the browser test saves its screenshots:
// $AMTSBOTE_SCREENSHOTS when set, else the test's temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("AMTSBOTE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestConsoleInABrowser drives the web console in headless Chromium as
// an operator would: log in, find a submitted case and see its events
// verified, look up a route, open the coverage picture and re-drive a
// dead letter, with a screenshot of each page and no console error.
func TestConsoleInABrowser(t *testing.T) {
	chromium(t)
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	if err := b.Ensure(context.Background(), bus.TopologyConfig{Duplicates: deadWindow}); err != nil {
		t.Fatal(err)
	}
	f := newFlowEnvOn(t, flowtest.OpenSQLite(t), b)
	admin := f.adminToken()
	f.importFile(admin, "gv100ad", "GV100AD_30112025.txt")
	f.importFile(admin, "leika", "leika.csv")
	f.activeDestination(admin, destLandBW, time.Time{}, "DE08")
	f.activeDestination(admin, destKreisBH, time.Time{}, "DE08315")
	f.activeDestination(admin, destMuenchen, time.Time{}, "DE09162")

	// A case through its lifecycle: created, submitted, routed, picked
	// up and accepted, its events signed by Amtsbote and the destination.
	d, err := f.st.Destination(context.Background(), destKreisBH)
	must(t, err)
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)
	s := f.prepare(t, sender, d, 1)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	f.route(t, s.SubmissionID)
	f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil).want(t, http.StatusOK)
	accept := f.receiverSET(t, set.AcceptSubmission, s, set.AcceptPayload{AuthenticationTags: s.tags()}, nil)
	f.postEvent(t, receiver, s.CaseID, accept).want(t, http.StatusNoContent)
	f.waitStatus(t, s.SubmissionID, sealed.Accepted)
	// And one waiting for its pickup.
	waiting := f.prepare(t, sender, d, 0)
	f.submit(t, sender, waiting).want(t, http.StatusAccepted)
	f.route(t, waiting.SubmissionID)

	// A dead letter: a Fachverfahren's sink that refuses until it is fixed.
	var mu sync.Mutex
	fixed, received := false, 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "fachverfahren"}, func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if !fixed {
				return bus.PermanentReason("sink-down", errors.New("the Fachverfahren refused the connection"))
			}
			received++
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consume: %v", err)
		}
	})
	// The waiting submission's INBOX message is what the sink refuses.
	rec, err := f.st.Submission(context.Background(), waiting.SubmissionID)
	must(t, err)
	routed := sealed.Submission{
		SubmissionID: rec.ID, CaseID: rec.CaseID, DestinationID: rec.DestinationID, Service: rec.ServiceIdentifier,
		Region: rec.Region, ARS: "083155012004", Attachments: []string{}, Payload: &sealed.Payload{EncryptedMetadata: waiting.metadata},
		SenderClientID: rec.SenderClientID,
	}
	data, err := routed.Encode()
	must(t, err)
	published := time.Now()
	_, err = b.PublishRouted(context.Background(), f.srv.URL, "08315", routed, data, time.Time{}, published)
	must(t, err)
	var seq uint64
	flowtest.Eventually(t, 10*time.Second, func() error {
		l, n, err := b.DeadLetters(context.Background(), bus.DeadFilter{}, 0, 10)
		if err != nil || n != 1 || l[0].Reason != "sink-down" {
			return fmt.Errorf("%d dead letters (%v)", n, err)
		}
		seq = l[0].Seq
		return nil
	})
	mu.Lock()
	fixed = true
	mu.Unlock()

	// The process's stage counter, as the ledger role registers it where
	// it shares the gateway's process.
	stages := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amtsbote_submissions_total", Help: "Submissions by stage."}, []string{"stage", "land"})
	f.reg.MustRegister(stages)
	stages.WithLabelValues("submitted", "08").Add(2)
	stages.WithLabelValues("accepted", "08").Inc()

	secret := f.client("console-operator", false, scope.Admin)
	bctx, consoleErrors := browser(t)
	dir := screenshotDir(t)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.CaptureScreenshot()(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		// A page that never shows what a step waits for fails the step,
		// not the whole test binary at its timeout.
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v (console errors: %q)", step, err, consoleErrors())
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}

	run("log in",
		chromedp.Navigate(f.srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#client-id")),
		shot("login"),
	)
	if navShown, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`getComputedStyle(document.getElementById("nav")).display !== "none"`)); err != nil || navShown {
		t.Errorf("the login page shows the navigation (%v)", err)
	}
	// A wrong secret is answered in the form, not by the browser's own
	// login dialog for the 401's Basic challenge.
	run("wrong secret",
		chromedp.SendKeys(chromedp.CSS("#client-id"), "console-operator"),
		chromedp.SendKeys(chromedp.CSS("#client-secret"), "not-the-secret"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#login-status .error")),
	)
	if got := text("#login-status .error"); !strings.Contains(got, "client authentication failed") {
		t.Errorf("a wrong secret shows %q", got)
	}
	if got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.activeElement.id + " " + document.documentElement.lang`)); err != nil || got != "client-secret en" {
		t.Errorf("after a refused login: focus and language %q (%v), want the secret's field and en", got, err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(document.getElementById("client-secret").value = "", true)`)); err != nil {
		t.Fatal(err)
	}
	run("log in",
		chromedp.SendKeys(chromedp.CSS("#client-secret"), secret),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#card-waiting")),
		shot("overview"),
	)
	if got := text("#card-dead .value"); got != "1" {
		t.Errorf("overview shows %q dead letters, want 1", got)
	}
	if got := text(`#stages tr[data-stage="submitted"] td:nth-child(2)`); got != "2" {
		t.Errorf("overview shows %q submitted, want 2", got)
	}
	if got := text("#card-waiting .value"); got != "1" {
		t.Errorf("overview shows %q waiting, want 1", got)
	}
	if got := text("#card-undecided .value"); got != "0" && got != "—" {
		t.Errorf("overview shows %q fetched and undecided, want 0 (or — before the ledger's first figures)", got)
	}
	// The updates can be paused (WCAG 2.2.2); the sparkline is labelled.
	run("pause updates", chromedp.Click(chromedp.CSS("#pause")), chromedp.WaitVisible(chromedp.CSS(`#pause[aria-pressed="true"]`)))
	if got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("spark").getAttribute("aria-label") + " | " + document.getElementById("announce").textContent`)); err != nil ||
		!strings.HasPrefix(got, "Waiting submissions over the last") || !strings.HasSuffix(got, "Updates paused.") {
		t.Errorf("sparkline label and announcement %q (%v)", got, err)
	}
	run("resume updates", chromedp.Click(chromedp.CSS("#pause")), chromedp.WaitVisible(chromedp.CSS(`#pause[aria-pressed="false"]`)))
	// Two minutes before the token runs out the session says so (WCAG 2.2.1).
	const setExpiry = `(() => {
		const t = JSON.parse(sessionStorage.getItem("amtsbote.token"));
		t.expires = Date.now() + %d;
		sessionStorage.setItem("amtsbote.token", JSON.stringify(t));
		location.hash = "#/overview?" + Date.now();
		return true;
	})()`
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(setExpiry, 60_000))); err != nil {
		t.Fatal(err)
	}
	run("session ending", chromedp.WaitVisible(chromedp.CSS("#session button")))
	if got := text("#session"); !strings.HasPrefix(got, "Your session ends at ") {
		t.Errorf("session warning %q", got)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(setExpiry, 1_500_000))); err != nil {
		t.Fatal(err)
	}
	run("session extended", chromedp.WaitNotVisible(chromedp.CSS("#session")))

	run("destinations",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="destinations"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-destination="`)+destKreisBH+`"]`),
		shot("destinations"),
	)
	if got := text(`tr[data-destination="` + destKreisBH + `"] td:nth-child(3)`); got != "1" {
		t.Errorf("destination %s shows %q waiting, want 1", destKreisBH, got)
	}
	// One destination a page: the second page links the first and the third.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(location.hash = "#/destinations?offset=1&limit=1", true)`)); err != nil {
		t.Fatal(err)
	}
	run("destinations paged", chromedp.WaitVisible(chromedp.CSS(`#destination-pager a[href*="offset=2"]`)))
	if got := text("#destination-pager"); !strings.HasPrefix(got, "2–2 of ") || !strings.Contains(got, "previous") || !strings.Contains(got, "next") {
		t.Errorf("destination pager %q", got)
	}
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#destination-table tbody tr").length`)); err != nil || n != 1 {
		t.Errorf("%d destinations on a page of 1 (%v)", n, err)
	}

	run("case",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="cases"]`)),
		chromedp.WaitVisible(chromedp.CSS("#case-id")),
		chromedp.SendKeys(chromedp.CSS("#case-id"), s.CaseID),
		chromedp.Click(chromedp.CSS(`#case-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-event="accept-submission"] .verified`)),
		shot("case"),
	)
	if got := text("#case-summary"); !strings.Contains(got, "every signature verified") {
		t.Errorf("case summary %q", got)
	}
	if got := text("#case-events"); strings.Contains(got, "null") {
		t.Errorf("case page shows a missing value: %.300q", got)
	}
	for _, typ := range []string{"create-submission", "submit-submission", "accept-submission"} {
		if got := text(`tr[data-event="` + typ + `"] td:last-child`); !strings.Contains(got, "valid") || strings.Contains(got, "✗") {
			t.Errorf("%s: signature column %q", typ, got)
		}
	}
	// Two events a page: the second page links the first.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(location.hash = "#/cases/`+s.CaseID+`?offset=2&limit=2", true)`)); err != nil {
		t.Fatal(err)
	}
	run("case paged", chromedp.WaitVisible(chromedp.CSS(`#case-pager a[href*="offset=0"]`)))
	if got := text("#case-summary"); !strings.Contains(got, "2 shown, every signature shown verified") {
		t.Errorf("paged case summary %q", got)
	}
	if got := text("#case-pager"); !strings.HasPrefix(got, "3–4 of ") || !strings.Contains(got, "previous") {
		t.Errorf("case pager %q", got)
	}

	run("route",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="routing"]`)),
		chromedp.WaitVisible(chromedp.CSS("#route-service")),
		chromedp.SendKeys(chromedp.CSS("#route-service"), strings.TrimPrefix(serviceA, leika.URNPrefix)),
		chromedp.SendKeys(chromedp.CSS("#route-place"), "Auggen"),
		chromedp.Click(chromedp.CSS(`#route-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#route-match")),
		shot("routing"),
	)
	if got := text("#route-level"); got != "kreis" {
		t.Errorf("matched at level %q, want kreis", got)
	}
	if got := text("#route-table"); !strings.Contains(got, "a more specific route matched") || !strings.Contains(got, "DE08315") {
		t.Errorf("routes passed over: %q", got)
	}

	run("coverage",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="coverage"]`)),
		chromedp.WaitVisible(chromedp.CSS("#coverage-service")),
		chromedp.SendKeys(chromedp.CSS("#coverage-service"), strings.TrimPrefix(serviceA, leika.URNPrefix)),
		chromedp.Click(chromedp.CSS(`#coverage-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#coverage-tiles .tile[data-kreis="08315"]`)),
		shot("coverage"),
	)
	tiles, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#coverage-tiles .tile").length`))
	must(t, err)
	if tiles < 390 {
		t.Errorf("%d Kreis tiles, want about 400", tiles)
	}
	if got := text(`.land[data-land="08"] .head`); !strings.Contains(got, "100 %") {
		t.Errorf("Baden-Württemberg: %q, want fully covered", got)
	}
	if got := text(`.land[data-land="09"] .head`); strings.Contains(got, " 0 %") || strings.Contains(got, "100 %") {
		t.Errorf("Bayern: %q, want partly covered", got)
	}
	if got := text("#uncovered"); got == "" {
		t.Error("no uncovered Gemeinden listed")
	}
	// A keyboard or screen reader gets each Kreis's share as text.
	tile, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`(() => {
		const t = document.querySelector('#coverage-tiles .tile[data-kreis="08315"]');
		t.focus();
		const row = [...document.querySelectorAll('.land[data-land="08"] details.kreise tr')].find((r) => r.textContent.startsWith("08315"));
		return {focused: String(document.activeElement === t), label: t.getAttribute("aria-label"), row: row ? row.textContent : "", title: document.title};
	})()`))
	must(t, err)
	if tile["focused"] != "true" || !strings.Contains(tile["label"], "(08315): 100 %") {
		t.Errorf("Kreis tile: focused %s, label %q; want focusable, naming its share", tile["focused"], tile["label"])
	}
	if !strings.Contains(tile["row"], "100 %") {
		t.Errorf("Kreis table row %q, want the Kreis and its share", tile["row"])
	}
	if tile["title"] != "Coverage · Amtsbote Console" {
		t.Errorf("page title %q, want the view's", tile["title"])
	}
	// One tab stop per Land; the arrow keys move among its Kreise, and the
	// focused one's name and share are shown as text.
	moved, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`(() => {
		const group = document.querySelector('.land[data-land="08"] .tiles');
		const tiles = [...group.querySelectorAll('.tile')];
		tiles[0].focus();
		group.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true}));
		return {
			stops: String(tiles.filter((t) => t.tabIndex === 0).length),
			second: String(document.activeElement === tiles[1]),
			shown: document.querySelector('.land[data-land="08"] .tile-label').textContent,
			label: tiles[1].getAttribute("aria-label"),
			announced: document.getElementById("announce").textContent,
		};
	})()`))
	must(t, err)
	if moved["stops"] != "1" || moved["second"] != "true" || moved["shown"] != moved["label"] {
		t.Errorf("arrow keys in a Land's tiles: %v", moved)
	}
	if !strings.Contains(moved["announced"], "people reach a destination") {
		t.Errorf("coverage announced %q", moved["announced"])
	}
	// The skip link moves focus to the content and leaves the view as it is.
	skipped, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => {
		const before = location.hash;
		document.querySelector("a.skip").click();
		return String(location.hash === before) + " " + document.activeElement.id;
	})()`))
	if err != nil || skipped != "true main" {
		t.Errorf("skip link: %q (%v), want the view kept and focus in main", skipped, err)
	}
	if got := text("main"); strings.Contains(got, "null") || strings.Contains(got, "undefined") {
		t.Errorf("coverage page shows a missing value: %.300q", got)
	}

	// The stream drops a re-drive as the original within its duplicates
	// window; the operator clicks once it has passed.
	flowtest.Eventually(t, 10*time.Second, func() error {
		if since := time.Since(published); since <= 2*deadWindow {
			return fmt.Errorf("the duplicates window is open for %s more", 2*deadWindow-since)
		}
		return nil
	})
	button := fmt.Sprintf(`button.redrive[data-seq="%d"]`, seq)
	run("dead letters",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="dead-letters"]`)),
		chromedp.WaitVisible(chromedp.CSS(button)),
		shot("dead-letters"),
		chromedp.Click(chromedp.CSS(button)),
		chromedp.WaitVisible(chromedp.CSS("#dead-notice")),
		chromedp.WaitVisible(chromedp.CSS("#dead-empty")),
		shot("dead-letters-redriven"),
	)
	flowtest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if received != 1 {
			return fmt.Errorf("the Fachverfahren received %d re-driven messages", received)
		}
		return nil
	})

	// A token from elsewhere (an OIDC issuer's) logs in as well.
	run("log in with a token",
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#access-token")),
		chromedp.SendKeys(chromedp.CSS("#access-token"), admin),
		chromedp.Click(chromedp.CSS(`#token-login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#card-waiting")),
	)

	// The wrong secret's 401 is the one error the browser logs.
	errs := slices.DeleteFunc(consoleErrors(), func(e string) bool { return strings.Contains(e, "status of 401") && strings.HasSuffix(e, "/token") })
	if len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("screenshots in %s", dir)
}
