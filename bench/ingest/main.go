// Command ingest is the Countersign ingest benchmark (issue item 10).
//
// In one run it measures, on loopback with the same Go load generator:
//
//   - closed-loop throughput (N concurrent keep-alive connections) and
//     open-loop latency at a fixed rate (requests on a fixed timetable,
//     latency from the scheduled time, so coordinated omission is counted)
//     for a bare echo v4 handler that only answers 200, and for the real
//     `bin/listener serve` with nats.sync_always off and on;
//   - the raw JetStream synchronous publish rate (embedded nats-server,
//     file stream, N concurrent js.Publish callers) with and without fsync:
//     the physical ceiling of each mode.
//
// Servers under test run as separate processes: the listener binary with a
// generated temp config, and this program with -serve-bare / -raw-publish.
// It prints a markdown table and rewrites the figures section of
// bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	tenant      = "demo"
	callbackKey = "bench-demo-callback-key"
)

type options struct {
	listener   string
	duration   time.Duration
	warmup     time.Duration
	rate       float64
	conns      int
	maxReq     int64
	readme     string
	phases     string
	keepLogs   bool
	publishers int
	label      string
	command    string
	rounds     int
	quiet      time.Duration
	roles      string
	openOnly   bool
}

func main() {
	var o options
	serveBare := flag.String("serve-bare", "", "child mode: serve the bare echo handler on ADDR and nothing else")
	rawPublish := flag.String("raw-publish", "", "child mode: raw JetStream publish benchmark in store dir DIR (prints JSON)")
	rawSync := flag.Bool("raw-sync", true, "child mode -raw-publish: SyncAlways (fsync before every PubAck)")
	flag.StringVar(&o.listener, "listener", "bin/listener", "listener binary to benchmark")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each phase")
	flag.Float64Var(&o.rate, "rate", 2000, "open-loop request rate (req/s) for the latency phases")
	flag.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections (and raw publishers)")
	flag.Int64Var(&o.maxReq, "max-requests", 5_000_000, "hard cap on requests (or publishes) per phase")
	flag.StringVar(&o.readme, "readme", "bench/README.md", "file whose figures section is rewritten (empty: do not write)")
	flag.StringVar(&o.phases, "phases", "bare,off,on,raw-off,raw-on", "comma-separated subset of phases to run")
	flag.StringVar(&o.label, "label", "", "what was measured (e.g. the git revision), printed with the figures")
	flag.StringVar(&o.command, "command", "", "the command line to print as the way to reproduce (default: this one)")
	flag.StringVar(&o.roles, "roles", "ingest", "listener --roles (ingest only: the worker would consume and retry the benchmark's callbacks meanwhile)")
	flag.BoolVar(&o.openOnly, "open-only", false, "skip the closed-loop phases (latency on a fresh server)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of all phases; the report gives medians over rounds")
	flag.DurationVar(&o.quiet, "quiet-wait", 30*time.Second, "before each phase, wait up to this long for other processes to go idle (0: don't)")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "keep the listener's temp dir (config, store, log)")
	flag.Parse()
	o.publishers = o.conns
	if o.command == "" {
		o.command = strings.Join(os.Args, " ")
	}

	if *serveBare != "" {
		if err := runBare(*serveBare); err != nil {
			fmt.Fprintln(os.Stderr, "bare:", err)
			os.Exit(1)
		}
		return
	}
	if *rawPublish != "" {
		if err := rawChild(*rawPublish, *rawSync, o); err != nil {
			fmt.Fprintln(os.Stderr, "raw:", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		children.killAll()
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- results

// latency summarises a set of samples (nanoseconds).
type latency struct {
	N                   int
	P50, P90, P99, P999 time.Duration
	Max                 time.Duration
}

func summarize(ns []int64) latency {
	if len(ns) == 0 {
		return latency{}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ns)))) - 1
		i = max(0, min(i, len(ns)-1))
		return time.Duration(ns[i])
	}
	return latency{N: len(ns), P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: time.Duration(ns[len(ns)-1])}
}

type loadResult struct {
	OK       int64            // 200 answers completed inside the window
	Errors   map[string]int64 // non-200 answers and transport errors, by kind
	Window   time.Duration    // measured window
	Rate     float64          // OK / window
	Lat      latency          // closed loop: send->answer; open loop: scheduled->answer
	Service  latency          // open loop only: actual send->answer
	Lag      latency          // open loop: scheduled time -> send (generator and queueing delay)
	CPU      cpuUse           // closed loop: CPU spent in the window
	Unsent   int64            // open loop: scheduled requests never sent (hard stop)
	Duration time.Duration
}

func (r loadResult) errorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// cpuPerReq is the server's CPU time per answered request, in µs.
func (r loadResult) cpuPerReq() float64 {
	if !r.CPU.OK || r.OK == 0 {
		return 0
	}
	return r.CPU.Server / float64(r.OK) * 1e6
}

func (r loadResult) cpuText() string {
	if !r.CPU.OK {
		return "cpu n/a"
	}
	return fmt.Sprintf("server %.2f cores, %.0f µs CPU/req; generator %.2f cores; other processes %.2f cores",
		r.CPU.ServerCPUs, r.cpuPerReq(), r.CPU.Generator/r.Window.Seconds(), r.CPU.Other/r.Window.Seconds())
}

func (r loadResult) errorText() string {
	if len(r.Errors) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d× %s", r.Errors[k], k))
	}
	return strings.Join(parts, ", ")
}

type rawResult struct {
	OK     int64   `json:"ok"`
	Errors int64   `json:"errors"`
	Secs   float64 `json:"seconds"`
	Rate   float64 `json:"rate"`
	Body   int     `json:"body_bytes"`
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	Sync   bool    `json:"sync_always"`
	Pubs   int     `json:"publishers"`
	CPUus  float64 `json:"cpu_us_per_msg"` // CPU of the whole process (publishers + server)
	Other  float64 `json:"other_cores"`    // other processes on the machine
}

// system is one server under test.
type system struct {
	Name       string
	Throughput *loadResult
	Open       *loadResult
	Stored     string // what the listener's metrics say it stored
	Notes      []string
}

// ---------------------------------------------------------------- body

// bodyGen makes realistic OneSpan callback bodies, each with a distinct
// packageId (so the JetStream duplicate window never short-circuits) of the
// same length as a real one (28 base64 characters).
type bodyGen struct {
	nonce uint64
	n     atomic.Uint64
}

var eventNames = []string{"PACKAGE_ACTIVATE", "SIGNER_COMPLETE", "DOCUMENT_SIGNED", "PACKAGE_COMPLETE"}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func newBodyGen() *bodyGen { return &bodyGen{nonce: uint64(time.Now().UnixNano())} }

// next returns the i-th body and its event name.
func (g *bodyGen) next() ([]byte, string) {
	i := g.n.Add(1)
	var id [28]byte
	x, y := g.nonce, i*0x9E3779B97F4A7C15
	for k := 0; k < 27; k++ {
		if k < 11 {
			id[k] = b64[x&63]
			x >>= 6
		} else {
			id[k] = b64[y&63]
			y >>= 6
			if y == 0 {
				y = i + 0x5bd1e995
			}
		}
	}
	id[27] = '='
	name := eventNames[i%uint64(len(eventNames))]
	b := make([]byte, 0, 256)
	b = append(b, `{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":"`...)
	b = append(b, name...)
	b = append(b, `","sessionUser":"30ba8506-9819-46aa-a22d-c0114ba34cd0","packageId":"`...)
	b = append(b, id[:]...)
	b = append(b, `","message":null,"documentId":null,"createdDate":"2026-11-22T13:20:01.456Z"}`...)
	return b, name
}

// meanBodySize is the mean length over one cycle of event names.
func meanBodySize() float64 {
	g := newBodyGen()
	total := 0
	for range eventNames {
		b, _ := g.next()
		total += len(b)
	}
	return float64(total) / float64(len(eventNames))
}

// ---------------------------------------------------------------- load

type target struct {
	url    string
	client *http.Client
	gen    *bodyGen
}

func newTarget(url string, conns int) *target {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &target{url: url, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, gen: newBodyGen()}
}

func (t *target) close() { t.client.CloseIdleConnections() }

// do sends one callback; it returns "" on a 200, else the kind of failure.
func (t *target) do(ctx context.Context) string {
	body, _ := t.gen.next()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return "request: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+callbackKey)
	resp, err := t.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "canceled"
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "transport error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return ""
}

type errCounter struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errCounter) add(kind string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[kind]++
	e.mu.Unlock()
}

// closedLoop runs conns workers back to back for warmup+dur; requests that
// complete inside the measured window count.
func closedLoop(ctx context.Context, t *target, pid, conns int, warmup, dur time.Duration, maxReq int64) loadResult {
	start := time.Now()
	mStart, mEnd := start.Add(warmup), start.Add(warmup+dur)
	var cpu0 cpuSnap
	snapped := make(chan struct{})
	time.AfterFunc(warmup, func() { cpu0 = takeCPU(pid); close(snapped) })
	var sent, ok atomic.Int64
	var errs errCounter
	samples := make([][]int64, conns)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int64, 0, 1<<14)
			for ctx.Err() == nil && sent.Add(1) <= maxReq {
				t0 := time.Now()
				if !t0.Before(mEnd) {
					break
				}
				kind := t.do(ctx)
				t1 := time.Now()
				if t1.Before(mStart) || !t1.Before(mEnd) {
					continue
				}
				if kind != "" {
					errs.add(kind)
					continue
				}
				ok.Add(1)
				if len(local) < 1<<20 {
					local = append(local, int64(t1.Sub(t0)))
				}
			}
			samples[w] = local
		}()
	}
	wg.Wait()
	cpu1 := takeCPU(pid)
	<-snapped
	var all []int64
	for _, s := range samples {
		all = append(all, s...)
	}
	window := min(time.Since(mStart), dur)
	r := loadResult{OK: ok.Load(), Errors: errs.m, Window: window, Lat: summarize(all), Duration: time.Since(start),
		CPU: cpuBetween(cpu0, cpu1, time.Since(mStart).Seconds())}
	r.Rate = float64(r.OK) / window.Seconds()
	return r
}

// openLoop issues requests on a fixed timetable (rate per second) whatever
// the answers do, and measures each latency from its scheduled time, so a
// stalled server is charged for every request it delayed (no coordinated
// omission). The service time (actual send to answer) is reported too.
func openLoop(ctx context.Context, t *target, rate float64, conns int, warmup, dur time.Duration, maxReq int64) loadResult {
	interval := time.Duration(float64(time.Second) / rate)
	n := int64(float64(warmup+dur) / float64(interval))
	n = min(n, maxReq)
	start := time.Now().Add(20 * time.Millisecond)
	mStart, mEnd := start.Add(warmup), start.Add(warmup+dur)
	hardStop := mEnd.Add(5 * time.Second)
	type job struct{ sched time.Time }
	// Jobs wait in this buffer when every connection is busy; that wait is
	// part of the latency from the scheduled time.
	jobs := make(chan job, 1<<16)
	var ok, inWindow atomic.Int64
	var errs errCounter
	type sample struct{ fromSched, service, lag int64 }
	samples := make([][]sample, conns)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]sample, 0, 1024)
			for j := range jobs {
				sentAt := time.Now()
				kind := t.do(ctx)
				end := time.Now()
				if j.sched.Before(mStart) {
					continue // warm-up
				}
				if kind != "" {
					errs.add(kind)
					continue
				}
				ok.Add(1)
				if end.Before(mEnd) {
					inWindow.Add(1)
				}
				local = append(local, sample{int64(end.Sub(j.sched)), int64(end.Sub(sentAt)), int64(sentAt.Sub(j.sched))})
			}
			samples[w] = local
		}()
	}
	var unsent int64
	func() {
		defer close(jobs)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for i := int64(0); i < n; i++ {
			sched := start.Add(time.Duration(i) * interval)
			if d := time.Until(sched); d > 0 {
				// Go's timers wake with ~1 ms granularity when the process is
				// idle (epoll_wait takes milliseconds), so requests leave in
				// small bursts; the send lag below shows what that costs.
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					unsent = n - i
					return
				}
			}
			if time.Now().After(hardStop) || ctx.Err() != nil {
				unsent = n - i
				return
			}
			select {
			case jobs <- job{sched}:
			case <-ctx.Done():
				unsent = n - i
				return
			}
		}
	}()
	wg.Wait()
	var fromSched, service, lag []int64
	for _, s := range samples {
		for _, x := range s {
			fromSched = append(fromSched, x.fromSched)
			service = append(service, x.service)
			lag = append(lag, x.lag)
		}
	}
	r := loadResult{OK: ok.Load(), Errors: errs.m, Window: dur, Lat: summarize(fromSched), Service: summarize(service),
		Lag: summarize(lag), Unsent: unsent, Duration: time.Since(start)}
	if unsent > 0 {
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
		r.Errors["never sent (hard stop)"] = unsent
	}
	r.Rate = float64(inWindow.Load()) / dur.Seconds() // answered by the end of the window
	return r
}

// ---------------------------------------------------------------- children

type childSet struct {
	mu   sync.Mutex
	cmds map[*exec.Cmd]struct{}
}

var children = &childSet{cmds: map[*exec.Cmd]struct{}{}}

func (c *childSet) add(cmd *exec.Cmd) {
	c.mu.Lock()
	c.cmds[cmd] = struct{}{}
	c.mu.Unlock()
}

func (c *childSet) remove(cmd *exec.Cmd) {
	c.mu.Lock()
	delete(c.cmds, cmd)
	c.mu.Unlock()
}

func (c *childSet) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cmd := range c.cmds {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
}

type child struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func startChild(name string, args []string, logPath string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	children.add(cmd)
	c := &child{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() {
		c.done <- cmd.Wait()
		_ = logf.Close()
		children.remove(cmd)
	}()
	return c, nil
}

// stop sends SIGTERM, waits up to 20 s for the graceful drain, then kills.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) tail(n int) string {
	b, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls url until it answers 200, the child exits or the deadline
// passes.
func waitReady(ctx context.Context, c *child, url string, deadline time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("exited before ready (%v):\n%s", err, c.tail(20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s:\n%s", deadline, c.tail(20))
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ---------------------------------------------------------------- phases

func run(ctx context.Context, o options) error {
	if o.conns < 1 || o.rate <= 0 || o.duration <= 0 || o.rounds < 1 {
		return errors.New("-conns, -rate, -duration and -rounds must be positive")
	}
	phases := map[string]bool{}
	for _, p := range strings.Split(o.phases, ",") {
		phases[strings.TrimSpace(p)] = true
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "countersign-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keepLogs {
			fmt.Fprintln(os.Stderr, "kept", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()

	// A private copy: in a shared tree someone may rebuild bin/listener
	// between two phases.
	if phases["off"] || phases["on"] {
		cp := filepath.Join(tmp, "listener")
		if err := copyFile(o.listener, cp); err != nil {
			return fmt.Errorf("listener binary: %w", err)
		}
		o.listener = cp
	}

	startedAt := time.Now().UTC()
	var rounds []*round
	for i := 1; i <= o.rounds; i++ {
		progress("round %d of %d", i, o.rounds)
		rd, err := runRound(ctx, o, phases, self, tmp)
		if err != nil {
			return err
		}
		rounds = append(rounds, rd)
	}

	report := render(o, startedAt, rounds)
	fmt.Println()
	fmt.Println(report)
	if o.readme != "" {
		if err := updateReadme(o.readme, report); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "updated", o.readme)
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}

// round is one pass over every phase. Phases of a round run back to back so
// that the ratios are taken between figures measured minutes apart at most;
// the report gives the median over rounds.
type round struct {
	systems map[string]*system
	raws    map[bool]*rawResult // with fsync: the mean of rawOn
	rawOn   []*rawResult        // fsync ceiling before and after ingest's closed loop
}

const (
	nameBare = "bare echo handler"
	nameOff  = "ingest, sync_always off"
	nameOn   = "ingest, sync_always on"
)

func runRound(ctx context.Context, o options, phases map[string]bool, self, tmp string) (*round, error) {
	rd := &round{systems: map[string]*system{}, raws: map[bool]*rawResult{}}
	if phases["bare"] {
		waitQuiet(ctx, o.quiet)
		s, err := benchBare(ctx, o, self, tmp)
		if err != nil {
			return nil, fmt.Errorf("bare handler: %w", err)
		}
		rd.systems[s.Name] = s
	}
	if phases["off"] {
		waitQuiet(ctx, o.quiet)
		s, err := benchListener(ctx, o, tmp, false, nil)
		if err != nil {
			return nil, fmt.Errorf("ingest, sync_always off: %w", err)
		}
		rd.systems[s.Name] = s
	}
	if phases["raw-off"] {
		waitQuiet(ctx, o.quiet)
		r, err := benchRaw(ctx, o, self, tmp, false)
		if err != nil {
			return nil, fmt.Errorf("raw publish without fsync: %w", err)
		}
		rd.raws[false] = r
	}
	// The fsync ceiling drifts with the disk (and with neighbours' I/O on a
	// shared VM), so it is measured right before and right after ingest's
	// closed loop with sync_always on, without waiting in between, and the
	// ceiling of the round is the mean of the two.
	var rawErr error
	rawOn := func() {
		if !phases["raw-on"] || rawErr != nil {
			return
		}
		r, err := benchRaw(ctx, o, self, tmp, true)
		if err != nil {
			rawErr = fmt.Errorf("raw publish with fsync: %w", err)
			return
		}
		rd.rawOn = append(rd.rawOn, r)
	}
	waitQuiet(ctx, o.quiet)
	rawOn()
	if phases["on"] {
		s, err := benchListener(ctx, o, tmp, true, rawOn)
		if err != nil {
			return nil, fmt.Errorf("ingest, sync_always on: %w", err)
		}
		rd.systems[s.Name] = s
	}
	if rawErr != nil {
		return nil, rawErr
	}
	if len(rd.rawOn) > 0 {
		m := *rd.rawOn[0]
		if len(rd.rawOn) == 2 {
			b := rd.rawOn[1]
			m.Rate, m.P50us, m.P99us = (m.Rate+b.Rate)/2, (m.P50us+b.P50us)/2, (m.P99us+b.P99us)/2
			m.CPUus, m.Other, m.Errors = (m.CPUus+b.CPUus)/2, (m.Other+b.Other)/2, m.Errors+b.Errors
		}
		rd.raws[true] = &m
	}
	return rd, ctx.Err()
}

// waitQuiet waits (at most max) until other processes use less than a
// quarter of a core over one second: on a shared machine a concurrent build
// or test run would otherwise be measured as the server's slowness.
func waitQuiet(ctx context.Context, limit time.Duration) {
	if limit <= 0 {
		return
	}
	end := time.Now().Add(limit)
	for {
		a := takeCPU(0)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		b := takeCPU(0)
		other := (b.busy - a.busy) - (b.self - a.self)
		if !a.ok || other < 0.25 {
			return
		}
		if time.Now().After(end) {
			progress("machine still busy (other processes %.2f cores) after %s; measuring anyway", other, limit)
			return
		}
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func loadPhases(ctx context.Context, o options, url string, pid int, s *system, afterClosed func()) {
	if o.openOnly {
		openPhase(ctx, o, url, s)
		return
	}
	progress("%s: closed loop, %d connections, %s (+%s warm-up)", s.Name, o.conns, o.duration, o.warmup)
	t := newTarget(url, o.conns)
	tp := closedLoop(ctx, t, pid, o.conns, o.warmup, o.duration, o.maxReq)
	t.close()
	s.Throughput = &tp
	progress("  %.0f req/s, p50 %s p99 %s, errors %s; %s", tp.Rate, tp.Lat.P50, tp.Lat.P99, tp.errorText(), tp.cpuText())
	if ctx.Err() != nil {
		return
	}
	if afterClosed != nil {
		afterClosed()
	}
	time.Sleep(500 * time.Millisecond) // let the server settle (GC, fsync backlog)
	openPhase(ctx, o, url, s)
}

func openPhase(ctx context.Context, o options, url string, s *system) {
	progress("%s: open loop, %.0f req/s, %s (+%s warm-up)", s.Name, o.rate, o.duration, o.warmup)
	t := newTarget(url, o.conns)
	r := openLoop(ctx, t, o.rate, o.conns, o.warmup, o.duration, o.maxReq)
	t.close()
	s.Open = &r
	progress("  achieved %.0f req/s; from scheduled p50 %s p99 %s; service p50 %s p99 %s; send lag p50 %s p99 %s; errors %s",
		r.Rate, r.Lat.P50, r.Lat.P99, r.Service.P50, r.Service.P99, r.Lag.P50, r.Lag.P99, r.errorText())
}

func benchBare(ctx context.Context, o options, self, tmp string) (*system, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c, err := startChild(self, []string{"-serve-bare", addr}, filepath.Join(tmp, "bare.log"))
	if err != nil {
		return nil, err
	}
	defer c.stop()
	if err := waitReady(ctx, c, "http://"+addr+"/healthz", 15*time.Second); err != nil {
		return nil, err
	}
	s := &system{Name: nameBare}
	loadPhases(ctx, o, "http://"+addr+"/v1/callbacks/"+tenant, c.cmd.Process.Pid, s, nil)
	return s, ctx.Err()
}

const listenerConfig = `# generated by bench/ingest
server:
  addr: %q
  public_url: "http://%s"
metrics:
  addr: %q
nats:
  store_dir: %q
  sync_always: %t
secrets:
  keys: ["Y291bnRlcnNpZ24tZGV2LW9ubHktbm90LXNlY3JldCE="]
admin:
  tokens: ["bench-admin-token-not-secret"]
tenants:
  demo:
    callback_keys: [%q]
    onespan:
      base_url: "http://127.0.0.1:9"
      api_key: "bench-onespan-api-key"
    salesforce:
      login_url: "http://127.0.0.1:9"
      client_id: "bench-sf-client-id"
      client_secret: "bench-sf-client-secret"
`

func benchListener(ctx context.Context, o options, tmp string, sync bool, afterClosed func()) (*system, error) {
	name, tag := nameOff, "off"
	if sync {
		name, tag = nameOn, "on"
	}
	dir := filepath.Join(tmp, "listener-"+tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if !o.keepLogs {
		defer os.RemoveAll(dir)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf(listenerConfig, addr, addr, maddr, filepath.Join(dir, "nats"), sync, callbackKey)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.listener)
	if err != nil {
		return nil, err
	}
	c, err := startChild(bin, []string{"serve", "--config", cfg, "--log-format", "text", "--log-level", "warn", "--roles", o.roles}, filepath.Join(dir, "listener.log"))
	if err != nil {
		return nil, err
	}
	defer c.stop()
	if err := waitReady(ctx, c, "http://"+addr+"/readyz", 30*time.Second); err != nil {
		return nil, err
	}
	s := &system{Name: name}
	loadPhases(ctx, o, "http://"+addr+"/v1/callbacks/"+tenant, c.cmd.Process.Pid, s, afterClosed)
	if ctx.Err() != nil {
		return s, ctx.Err()
	}
	accepted, dup, err := scrapeOutcomes("http://" + maddr + "/metrics")
	if err != nil {
		s.Notes = append(s.Notes, "metrics scrape failed: "+err.Error())
	} else {
		s.Stored = fmt.Sprintf("%d accepted, %d duplicate", accepted, dup)
		progress("  listener metrics: %s", s.Stored)
	}
	if errs := countErrorLines(c.log); errs > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d ERROR lines in the listener log", errs))
	}
	return s, nil
}

// scrapeOutcomes sums countersign_callbacks_received_total by outcome.
func scrapeOutcomes(url string) (accepted, duplicate int64, err error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "countersign_callbacks_received_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, perr := strconv.ParseFloat(line[i+1:], 64)
		if perr != nil {
			continue
		}
		switch {
		case strings.Contains(line, `outcome="accepted"`):
			accepted += int64(v)
		case strings.Contains(line, `outcome="duplicate"`):
			duplicate += int64(v)
		}
	}
	return accepted, duplicate, nil
}

func countErrorLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "level=ERROR")
}

func benchRaw(ctx context.Context, o options, self, tmp string, sync bool) (*rawResult, error) {
	dir, err := os.MkdirTemp(tmp, "raw-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	progress("raw js.Publish, SyncAlways %t, %d publishers, %s (+%s warm-up)", sync, o.publishers, o.duration, o.warmup)
	logPath := filepath.Join(dir, "raw.log")
	args := []string{"-raw-publish", filepath.Join(dir, "store"), "-raw-sync=" + strconv.FormatBool(sync),
		"-conns", strconv.Itoa(o.publishers), "-duration", o.duration.String(), "-warmup", o.warmup.String(),
		"-max-requests", strconv.FormatInt(o.maxReq, 10)}
	c, err := startChild(self, args, logPath)
	if err != nil {
		return nil, err
	}
	select {
	case err = <-c.done:
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	case <-time.After(o.warmup + o.duration + 60*time.Second):
		c.stop()
		return nil, errors.New("raw publish child did not finish in time")
	}
	if err != nil {
		return nil, fmt.Errorf("%v:\n%s", err, c.tail(20))
	}
	out, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r rawResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("raw child output %q: %w", lines[len(lines)-1], err)
	}
	progress("  %.0f msg/s, p50 %.0fµs p99 %.0fµs, errors %d; %.0f µs CPU/msg; other processes %.2f cores", r.Rate, r.P50us, r.P99us, r.Errors, r.CPUus, r.Other)
	return &r, nil
}

// ---------------------------------------------------------------- report

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat collects one figure over rounds.
type stat []float64

func (s stat) med() float64 { return median(s) }

func (s stat) rng(format string) string {
	if len(s) < 2 {
		return ""
	}
	lo, hi := slicesMin(s), slicesMax(s)
	return " (" + fmt.Sprintf(format, lo) + "–" + fmt.Sprintf(format, hi) + ")"
}

func slicesMin(s []float64) float64 {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

func slicesMax(s []float64) float64 {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

func msf(v float64) string { return fmt.Sprintf("%.2f ms", v) }

func dms(d time.Duration) float64 { return float64(d) / 1e6 }

func render(o options, at time.Time, rounds []*round) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("Measured %s UTC on %s, %d CPUs (%s), Go %s; load generator, listener and NATS on the same machine, loopback only.\n",
		at.Format("2006-01-02 15:04"), cpuModel(), runtime.NumCPU(), kernel(), strings.TrimPrefix(runtime.Version(), "go"))
	w("Command: `%s`", o.command)
	if o.label != "" {
		w(" (%s)", o.label)
	}
	w(".\n")
	w("Each phase: %s warm-up (not counted) + %s measured; %d keep-alive connections; callback body %.0f bytes, distinct packageId per request. ",
		o.warmup, o.duration, o.conns, meanBodySize())
	w("%d round(s) of all phases; figures are medians over rounds, (min–max) when there are several. ", len(rounds))
	w("Listener: `serve --roles %s --log-level warn --log-format text`, generated config with one tenant, temp store dir; "+
		"bare handler: echo v4 route that answers 200 and nothing else.\n\n", o.roles)

	sysStat := func(name string, f func(*system) (float64, bool)) stat {
		var s stat
		for _, rd := range rounds {
			if sy := rd.systems[name]; sy != nil {
				if v, ok := f(sy); ok {
					s = append(s, v)
				}
			}
		}
		return s
	}
	tpStat := func(name string, f func(*loadResult) float64) stat {
		return sysStat(name, func(s *system) (float64, bool) {
			if s.Throughput == nil {
				return 0, false
			}
			return f(s.Throughput), true
		})
	}
	opStat := func(name string, f func(*loadResult) float64) stat {
		return sysStat(name, func(s *system) (float64, bool) {
			if s.Open == nil {
				return 0, false
			}
			return f(s.Open), true
		})
	}
	rawStat := func(sync bool, f func(*rawResult) float64) stat {
		var s stat
		for _, rd := range rounds {
			if r := rd.raws[sync]; r != nil {
				s = append(s, f(r))
			}
		}
		return s
	}
	names := []string{nameBare, nameOff, nameOn}

	w("**Throughput** (closed loop: %d connections, each sends its next request when the answer arrives)\n\n", o.conns)
	w("| server under test | req/s | p50 / p99 at that load | server CPU per request | server cores busy | generator cores busy | other processes' cores | non-200 / errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		rate := tpStat(n, func(r *loadResult) float64 { return r.Rate })
		if len(rate) == 0 {
			continue
		}
		secs := func(r *loadResult) float64 { return r.Window.Seconds() }
		w("| %s | **%.0f**%s | %s / %s | %.0f µs | %.2f | %.2f | %.2f | %.0f |\n", n, rate.med(), rate.rng("%.0f"),
			msf(tpStat(n, func(r *loadResult) float64 { return dms(r.Lat.P50) }).med()),
			msf(tpStat(n, func(r *loadResult) float64 { return dms(r.Lat.P99) }).med()),
			tpStat(n, func(r *loadResult) float64 { return r.cpuPerReq() }).med(),
			tpStat(n, func(r *loadResult) float64 { return r.CPU.ServerCPUs }).med(),
			tpStat(n, func(r *loadResult) float64 { return r.CPU.Generator / secs(r) }).med(),
			tpStat(n, func(r *loadResult) float64 { return r.CPU.Other / secs(r) }).med(),
			tpStat(n, func(r *loadResult) float64 { return float64(r.errorCount()) }).med())
	}
	for _, sync := range []bool{false, true} {
		rate := rawStat(sync, func(r *rawResult) float64 { return r.Rate })
		if len(rate) == 0 {
			continue
		}
		mode := "without fsync (default 2 min sync interval)"
		if sync {
			mode = "with fsync (`SyncAlways: true`)"
		}
		w("| raw `js.Publish` + PubAck, %d publishers, %s | **%.0f**%s msg/s | %s / %s | %.0f µs (publishers + server) | %.2f | – | %.2f | %.0f |\n",
			o.publishers, mode, rate.med(), rate.rng("%.0f"),
			msf(rawStat(sync, func(r *rawResult) float64 { return r.P50us / 1000 }).med()),
			msf(rawStat(sync, func(r *rawResult) float64 { return r.P99us / 1000 }).med()),
			rawStat(sync, func(r *rawResult) float64 { return r.CPUus }).med(),
			rawStat(sync, func(r *rawResult) float64 { return r.CPUus * r.Rate / 1e6 }).med(),
			rawStat(sync, func(r *rawResult) float64 { return r.Other }).med(),
			rawStat(sync, func(r *rawResult) float64 { return float64(r.Errors) }).med())
	}

	w("\n**Latency at a fixed %.0f req/s** (open loop: requests leave on a fixed timetable whatever the answers do; "+
		"\"from scheduled\" counts any wait caused by a slow answer, so there is no coordinated omission; "+
		"\"service\" is send to answer; \"send lag\" is the generator's own delay from scheduled time to send, "+
		"about 0.5 ms because Go's timers wake with 1 ms granularity when the process is idle)\n\n", o.rate)
	w("| server under test | answered in window, req/s | p50 / p99 from scheduled | p50 / p99 service | send lag p50 / p99 | max from scheduled | non-200 / errors |\n")
	w("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		p99 := opStat(n, func(r *loadResult) float64 { return dms(r.Lat.P99) })
		if len(p99) == 0 {
			continue
		}
		w("| %s | %.0f | **%s / %s**%s | %s / %s | %s / %s | %s | %.0f |\n", n,
			opStat(n, func(r *loadResult) float64 { return r.Rate }).med(),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Lat.P50) }).med()), msf(p99.med()), p99.rng("%.1f"),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Service.P50) }).med()),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Service.P99) }).med()),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Lag.P50) }).med()),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Lag.P99) }).med()),
			msf(opStat(n, func(r *loadResult) float64 { return dms(r.Lat.Max) }).med()),
			opStat(n, func(r *loadResult) float64 { return float64(r.errorCount()) }).med())
	}
	w("\n")
	for i, rd := range rounds {
		for _, n := range names {
			s := rd.systems[n]
			if s == nil || (s.Stored == "" && len(s.Notes) == 0) {
				continue
			}
			w("- round %d, %s: listener metrics after the phase: %s", i+1, n, s.Stored)
			for _, note := range s.Notes {
				w("; %s", note)
			}
			w(".\n")
		}
	}

	for i, rd := range rounds {
		if len(rd.rawOn) == 2 {
			w("- round %d, raw fsync ceiling before / after ingest's closed loop with sync_always on: %.0f / %.0f msg/s.\n",
				i+1, rd.rawOn[0].Rate, rd.rawOn[1].Rate)
		}
	}

	// Ratios are taken within each round, then the median.
	ratio := func(num, den func(*round) (float64, bool)) stat {
		var s stat
		for _, rd := range rounds {
			a, ok1 := num(rd)
			c, ok2 := den(rd)
			if ok1 && ok2 && c > 0 {
				s = append(s, a/c)
			}
		}
		return s
	}
	tp := func(name string) func(*round) (float64, bool) {
		return func(rd *round) (float64, bool) {
			if s := rd.systems[name]; s != nil && s.Throughput != nil {
				return s.Throughput.Rate, true
			}
			return 0, false
		}
	}
	raw := func(rd *round) (float64, bool) {
		if r := rd.raws[true]; r != nil {
			return r.Rate, true
		}
		return 0, false
	}
	list := func(s stat, format string) string {
		parts := make([]string, len(s))
		for i, v := range s {
			parts[i] = fmt.Sprintf(format, v)
		}
		return strings.Join(parts, ", ")
	}
	w("\n| target | measured (median; per round) | verdict |\n|---|---|---|\n")
	if r := ratio(tp(nameOff), tp(nameBare)); len(r) > 0 {
		w("| sync_always off: ingest ≥ 0.5× bare handler req/s | **%.2f×** (%s) | %s |\n", r.med(), list(r, "%.2f"), verdict(r.med() >= 0.5))
	}
	if p99 := opStat(nameOff, func(r *loadResult) float64 { return dms(r.Lat.P99) }); len(p99) > 0 {
		errs := opStat(nameOff, func(r *loadResult) float64 { return float64(r.errorCount()) }).med()
		w("| sync_always off: p99 ≤ 5 ms at %.0f req/s, from scheduled time | **%s** (%s) | %s |\n",
			o.rate, msf(p99.med()), list(p99, "%.2f ms"), verdict(p99.med() <= 5 && errs == 0))
	}
	if r := ratio(tp(nameOn), raw); len(r) > 0 {
		w("| sync_always on: ingest ≥ 0.8× raw fsync publish ceiling | **%.2f×** (%s) | %s |\n", r.med(), list(r, "%.2f"), verdict(r.med() >= 0.8))
	}
	if p99 := opStat(nameOn, func(r *loadResult) float64 { return dms(r.Lat.P99) }); len(p99) > 0 {
		w("| (no target) sync_always on: p99 at %.0f req/s, from scheduled time | %s (%s) | – |\n", o.rate, msf(p99.med()), list(p99, "%.2f ms"))
	}
	return b.String()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.IndexByte(line, ':'); i > 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

const (
	beginMark = "<!-- BEGIN ingest figures (written by bench/ingest; edits inside are overwritten) -->"
	endMark   = "<!-- END ingest figures -->"
)

const readmeIntro = `# Benchmarks

Benchmarks of Countersign, run on the project's reference VM. Each section says
how to reproduce its figures.
`

// readmeSection wraps the figures with the command that reproduces them.
func readmeSection(report string) string {
	return beginMark + "\n" + report + endMark + "\n"
}

// updateReadme replaces the figures block of path (or appends it, or
// creates the file), leaving every other section as it is.
func updateReadme(path, report string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out := spliceSection(string(old), readmeSection(report))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func spliceSection(old, section string) string {
	if old == "" {
		return readmeIntro + "\n## Ingest (`bench/ingest`)\n\n" + section
	}
	i := strings.Index(old, beginMark)
	j := strings.Index(old, endMark)
	if i >= 0 && j > i {
		return old[:i] + section + strings.TrimPrefix(old[j+len(endMark):], "\n")
	}
	if !strings.HasSuffix(old, "\n") {
		old += "\n"
	}
	return old + "\n## Ingest (`bench/ingest`)\n\n" + section
}
