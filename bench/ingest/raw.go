package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawStream is an embedded nats-server with one R1 file stream, connected
// in-process like the listener's embedded mode, with nothing else on top.
type rawStream struct {
	ns *server.Server
	nc *nats.Conn
	js jetstream.JetStream
}

func openRawStream(ctx context.Context, dir string, syncAlways bool) (*rawStream, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "bench-raw",
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: syncAlways,
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats not ready")
	}
	r := &rawStream{ns: ns}
	if r.nc, err = nats.Connect("", nats.InProcessServer(ns)); err != nil {
		r.close()
		return nil, err
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		r.close()
		return nil, err
	}
	if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      "RAW",
		Subjects:  []string{"raw.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Replicas:  1,
	}); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rawStream) close() {
	if r.nc != nil {
		r.nc.Close()
	}
	r.ns.Shutdown()
	r.ns.WaitForShutdown()
}

// publish is one synchronous publish: send, wait for the PubAck.
func (r *rawStream) publish(ctx context.Context, g *bodyGen) error {
	body, name := g.next()
	_, err := r.js.Publish(ctx, "raw."+tenant+"."+name, body)
	return err
}

// publishLikeIngest publishes with the message shape queue.Publish uses: the
// three Countersign headers, a traceparent, Nats-Msg-Id (a distinct id, so
// the duplicate window is consulted but never hits) and an expected stream.
// headers and msgID choose which parts of that shape are sent.
func (r *rawStream) publishLikeIngest(ctx context.Context, g *bodyGen, id uint64, headers, msgID bool) error {
	body, name := g.next()
	msg := &nats.Msg{Subject: "raw." + tenant + "." + name, Data: body, Header: nats.Header{}}
	if headers {
		msg.Header.Set("Countersign-Package", "LWsUTvGgE4WpOvaQPT16idnxNj8=")
		msg.Header.Set("Countersign-Received-At", time.Now().UTC().Format(time.RFC3339Nano))
		msg.Header.Set("Countersign-Source", "callback")
		msg.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
	opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}
	if msgID {
		opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("%064x", id)), jetstream.WithExpectStream("RAW"))
	}
	_, err := r.js.PublishMsg(ctx, msg, opts...)
	return err
}

// rawChild runs o.conns publishers back to back for warmup+duration and
// prints a rawResult as JSON on stdout.
func rawChild(dir string, syncAlways bool, o options) error {
	ctx := context.Background()
	r, err := openRawStream(ctx, dir, syncAlways)
	if err != nil {
		return err
	}
	defer r.close()
	g := newBodyGen()
	start := time.Now()
	mStart, mEnd := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	var sent, ok, errs atomic.Int64
	var cpu0 cpuSnap
	snapped := make(chan struct{})
	time.AfterFunc(o.warmup, func() { cpu0 = takeCPU(0); close(snapped) })
	samples := make([][]int64, o.conns)
	var wg sync.WaitGroup
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int64, 0, 1<<12)
			for sent.Add(1) <= o.maxReq {
				t0 := time.Now()
				if !t0.Before(mEnd) {
					break
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := r.publish(pctx, g)
				cancel()
				t1 := time.Now()
				if t1.Before(mStart) || !t1.Before(mEnd) {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				ok.Add(1)
				local = append(local, int64(t1.Sub(t0)))
			}
			samples[w] = local
		}()
	}
	wg.Wait()
	cpu1 := takeCPU(0)
	<-snapped
	var all []int64
	for _, s := range samples {
		all = append(all, s...)
	}
	window := min(time.Since(mStart), o.duration)
	lat := summarize(all)
	b, _ := g.next()
	res := rawResult{OK: ok.Load(), Errors: errs.Load(), Secs: window.Seconds(), Rate: float64(ok.Load()) / window.Seconds(),
		CPUus: cpu1.self - cpu0.self, Other: cpu1.busy - cpu0.busy - (cpu1.self - cpu0.self),
		Body: len(b), P50us: float64(lat.P50) / 1e3, P99us: float64(lat.P99) / 1e3, Sync: syncAlways, Pubs: o.conns}
	if res.OK > 0 {
		res.CPUus = res.CPUus / float64(res.OK) * 1e6
	}
	res.Other = max(0, res.Other) / time.Since(mStart).Seconds()
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, string(out))
	return err
}
