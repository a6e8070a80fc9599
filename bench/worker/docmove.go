package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// The document phase runs the production binary (`listener serve --roles
// ingest,worker`) as its own process, so its peak RSS is the worker's alone;
// the emulators live in this driver process. The callbacks travel the real
// way: OneSpan emulator -> listener HTTP -> NATS -> worker -> Salesforce.

type docmoveResult struct {
	size          int64
	baselineHWM   int64 // VmHWM once the package's earlier events were delivered
	peakHWM       int64 // VmHWM after the upload
	maxSampledRSS int64
	upload        time.Duration // PACKAGE_COMPLETE sent -> file in Salesforce
	sha256OK      bool
	sizeOK        bool
	gotSHA256     string
}

const (
	docPackage = "bench-docmove-pkg-1Gi="
	docID      = "doc-1"
	benchKey   = "fake-callback-key-bench"
)

func runDocmove(ctx context.Context, listenerBin string, size int64, limit time.Duration, logPath string) (docmoveResult, error) {
	res := docmoveResult{size: size}
	if _, err := os.Stat(listenerBin); err != nil {
		return res, fmt.Errorf("listener binary %s: %w (run `make build` first)", listenerBin, err)
	}
	sfOpts := sfsandbox.DefaultOptions() // keeps size and hashes of files, not bytes
	sf := sfsandbox.New(sfOpts)
	if _, err := sf.Listen("127.0.0.1:0"); err != nil {
		return res, err
	}
	defer sf.Close()
	osb := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-onespan-key-bench"}})
	if _, err := osb.Listen("127.0.0.1:0"); err != nil {
		return res, err
	}
	defer osb.Close()

	dir, err := os.MkdirTemp("", "bench-docmove-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	httpAddr, err := freeAddr()
	if err != nil {
		return res, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return res, err
	}
	cfg := fmt.Sprintf(`
server: { addr: %q, public_url: "http://%s" }
metrics: { addr: %q }
nats: { store_dir: %q }
secrets: { keys: [%q] }
admin: { tokens: ["fake-admin-token-bench-0123456789"] }
tenants:
  demo:
    callback_keys: [%q]
    onespan: { base_url: %q, api_key: "fake-onespan-key-bench" }
    salesforce:
      login_url: %q
      client_id: %q
      client_secret: %q
      refresh_token: "${BENCH_SF_REFRESH_TOKEN}"
`, httpAddr, httpAddr, metricsAddr, filepath.Join(dir, "nats"), sealKey, benchKey, osb.URL(), sf.URL(), sfOpts.ClientID, sfOpts.ClientSecret)
	cfgPath := filepath.Join(dir, "listener.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return res, err
	}
	_, refresh := sf.IssueTokens("api refresh_token")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.Command(listenerBin, "serve", "--config", cfgPath, "--roles", "ingest,worker", "--log-format", "text")
	// The fake refresh token goes through the environment, never a log or argv.
	cmd.Env = append(os.Environ(), "BENCH_SF_REFRESH_TOKEN="+refresh)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	base := "http://" + httpAddr
	if err := poll(ctx, 20*time.Second, "listener ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return res, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	osb.SetCallback(base+"/v1/callbacks/"+tenantID, benchKey, ossandbox.Events)

	// The package's life up to completion: the worker delivers these first,
	// so the baseline includes a warmed-up worker and token.
	if err := osb.CreatePackage(ctx, ossandbox.Package{ID: docPackage, Name: "1 GiB contract",
		Documents: []ossandbox.Document{{ID: docID, Name: "Big contract", Size: size}},
		Signers:   []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}}); err != nil {
		return res, err
	}
	for _, step := range []func() error{
		func() error { return osb.Activate(ctx, docPackage) },
		func() error { return osb.SignDocument(ctx, docPackage, docID, "signer-1") },
		func() error { return osb.SignerComplete(ctx, docPackage, "signer-1") },
	} {
		if err := step(); err != nil {
			return res, err
		}
	}
	if err := poll(ctx, 30*time.Second, "events before completion delivered", func() bool {
		rec, ok := sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", docPackage)
		return ok && rec["Last_Event__c"] == "SIGNER_COMPLETE"
	}); err != nil {
		return res, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	pid := cmd.Process.Pid
	if res.baselineHWM, err = procStatusKB(pid, "VmHWM"); err != nil {
		return res, err
	}

	// The expected digest is computed while the copy runs.
	want := make(chan string, 1)
	go func() { want <- ossandbox.ExpectedSHA256(docPackage, docID, size) }()
	sampler := startRSSSampler(pid, 50*time.Millisecond)
	start := time.Now()
	if err := osb.Complete(ctx, docPackage); err != nil {
		sampler.stop()
		return res, err
	}
	key := docPackage + "/" + docID
	var cv sfsandbox.ContentFile
	err = poll(ctx, limit, "1 GiB document in Salesforce", func() bool {
		var ok bool
		cv, ok = sf.FindContentVersion("OneSpan_Document_Key__c", key)
		return ok
	})
	res.upload = time.Since(start)
	res.maxSampledRSS = sampler.stop()
	if err != nil {
		return res, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	if res.peakHWM, err = procStatusKB(pid, "VmHWM"); err != nil {
		return res, err
	}
	res.gotSHA256 = cv.SHA256
	res.sizeOK = cv.Size == size
	res.sha256OK = cv.SHA256 == <-want
	if !res.sizeOK || !res.sha256OK {
		return res, fmt.Errorf("uploaded file: size %d (want %d), sha256 ok %v", cv.Size, size, res.sha256OK)
	}
	return res, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// poll checks cond every 20 ms until it holds or limit passes.
func poll(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s waiting for %s", limit, what)
}

// procStatusKB reads a "<field>: N kB" line of /proc/<pid>/status, in bytes.
func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of %d: %w", field, pid, err)
		}
		return kb << 10, nil
	}
	return 0, errors.Join(sc.Err(), fmt.Errorf("no %s in /proc/%d/status", field, pid))
}

// rssSampler records the highest VmRSS seen, as a cross-check of VmHWM.
type rssSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	max  int64
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := procStatusKB(pid, "VmRSS"); err == nil && v > s.max {
				s.max = v
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() int64 {
	close(s.done)
	s.wg.Wait()
	return s.max
}
