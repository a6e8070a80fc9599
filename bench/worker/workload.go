package main

import (
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/onespan"
)

// lifecycle is the event sequence of one package in the burst workloads:
// created, sent, viewed and signed document by document, completed. It is
// cut or cycled to the number of events per package asked for.
var lifecycle = []string{
	callback.PackageCreate, callback.PackageActivate,
	callback.DocumentViewed, callback.DocumentSigned,
	callback.DocumentViewed, callback.DocumentSigned,
	callback.SignerComplete,
}

// burst returns n events over pkgs packages, interleaved the way a busy
// account produces them (step k of every package before step k+1), so a
// batch of 200 messages touches up to 200 different packages: the worst case
// for batching by package, and the realistic one for a burst. The last event
// of every package is PACKAGE_COMPLETE when it has room for one.
func burst(n, pkgs int, base time.Time) []onespan.CallbackEvent {
	count := func(p int) int { // events of package p: n spread as evenly as possible
		c := n / pkgs
		if p < n%pkgs {
			c++
		}
		return c
	}
	middle := lifecycle[2:]
	events := make([]onespan.CallbackEvent, 0, n)
	for step := 0; len(events) < n; step++ {
		for p := 0; p < pkgs; p++ {
			c := count(p)
			if step >= c {
				continue
			}
			var name string
			switch {
			case step < 2:
				name = lifecycle[step]
			case step == c-1:
				name = callback.PackageComplete
			default:
				name = middle[(step-2)%len(middle)]
			}
			doc := ""
			if name == callback.DocumentSigned || name == callback.DocumentViewed {
				doc = fmt.Sprintf("doc-%d", 1+(step/2)%2)
			}
			// Distinct createdDate per step keeps every event key unique.
			at := base.Add(time.Duration(step)*time.Second + time.Duration(p)*time.Millisecond)
			events = append(events, onespan.NewCallbackEvent(name, "signer-1", packageID(p), "", doc, at))
		}
	}
	return events
}

// packageID looks like OneSpan's (base64 with '=' and '-', which the KV keys
// must survive).
func packageID(i int) string { return fmt.Sprintf("bench-pkg-%05d-Xy9=", i) }
