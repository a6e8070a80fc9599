package onespan

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
)

// Desired is the callback registration a tenant should have.
type Desired struct {
	URL    string
	Key    string // secret: compared, sent, never printed
	Events []string
}

// CallbackURL is the listener's callback route for a tenant (ARCHITECTURE §5).
func CallbackURL(publicURL, tenant string) string {
	return strings.TrimRight(publicURL, "/") + "/v1/callbacks/" + url.PathEscape(tenant)
}

// DesiredFor builds the registration for a tenant from its config values: the
// tenant's route under publicURL, its first (newest) callback key and its
// events, all known events when none are listed.
func DesiredFor(publicURL, tenant string, callbackKeys, events []string) (Desired, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Desired{}, fmt.Errorf("tenant %s: server.public_url %q must be an absolute http(s) url", tenant, publicURL)
	}
	if len(callbackKeys) == 0 || callbackKeys[0] == "" {
		return Desired{}, fmt.Errorf("tenant %s: no callback key to register (tenants.%s.callback_keys)", tenant, tenant)
	}
	if len(events) == 0 {
		events = AllEvents
	}
	return Desired{URL: CallbackURL(publicURL, tenant), Key: callbackKeys[0], Events: slices.Clone(events)}, nil
}

// KeyState compares the registered key with the wanted one without revealing either.
type KeyState string

// Key states, as printed.
const (
	KeyMatches KeyState = "matches"
	KeyDiffers KeyState = "differs"
	KeyNotSet  KeyState = "not set"
)

// Diff is what differs between the current registration and the wanted one.
// It holds no key, so it is safe to print and log.
type Diff struct {
	CurrentURL, WantURL string
	Key                 KeyState
	Missing             []string // wanted events OneSpan will not send
	Extra               []string // registered events nobody asked for
}

// Compare returns the difference between current (nil = none) and want.
func Compare(current *Callback, want Desired) Diff {
	if current == nil {
		current = &Callback{}
	}
	d := Diff{CurrentURL: current.URL, WantURL: want.URL}
	switch {
	case current.Key == "":
		d.Key = KeyNotSet
	case subtle.ConstantTimeCompare([]byte(current.Key), []byte(want.Key)) == 1:
		d.Key = KeyMatches
	default:
		d.Key = KeyDiffers
	}
	have := setOf(current.Events)
	wanted := setOf(want.Events)
	for e := range wanted {
		if !have[e] {
			d.Missing = append(d.Missing, e)
		}
	}
	for e := range have {
		if !wanted[e] {
			d.Extra = append(d.Extra, e)
		}
	}
	slices.Sort(d.Missing)
	slices.Sort(d.Extra)
	return d
}

func setOf(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// URLMatches reports whether OneSpan calls the wanted URL.
func (d Diff) URLMatches() bool { return d.CurrentURL == d.WantURL }

// InSync reports whether nothing needs to change.
func (d Diff) InSync() bool {
	return d.URLMatches() && d.Key == KeyMatches && len(d.Missing) == 0 && len(d.Extra) == 0
}

// Problems lists each mismatch in words, empty when in sync.
func (d Diff) Problems() []string {
	var p []string
	switch {
	case d.CurrentURL == "":
		p = append(p, "url: not set")
	case !d.URLMatches():
		p = append(p, fmt.Sprintf("url: wrong (%s, want %s)", d.CurrentURL, d.WantURL))
	}
	if d.Key != KeyMatches {
		p = append(p, "key: "+string(d.Key))
	}
	if len(d.Missing) > 0 {
		p = append(p, "missing events: "+strings.Join(d.Missing, ", "))
	}
	if len(d.Extra) > 0 {
		p = append(p, "extra events: "+strings.Join(d.Extra, ", "))
	}
	return p
}

// WriteStatus prints the current registration against the wanted one.
func (d Diff) WriteStatus(w io.Writer, current *Callback) {
	if current == nil {
		current = &Callback{}
	}
	url := d.CurrentURL
	if url == "" {
		url = "(not set)"
	}
	fmt.Fprintf(w, "url:    %s\n", url)
	if d.URLMatches() {
		fmt.Fprintf(w, "        matches\n")
	} else {
		fmt.Fprintf(w, "        differs, want %s\n", d.WantURL)
	}
	fmt.Fprintf(w, "key:    %s\n", d.Key)
	fmt.Fprintf(w, "events: %d registered\n", len(current.Events))
	if len(d.Missing) > 0 {
		fmt.Fprintf(w, "        missing: %s\n", strings.Join(d.Missing, ", "))
	}
	if len(d.Extra) > 0 {
		fmt.Fprintf(w, "        extra:   %s\n", strings.Join(d.Extra, ", "))
	}
	if d.InSync() {
		fmt.Fprintln(w, "status: matches (in sync with this deployment)")
	} else {
		fmt.Fprintln(w, "status: out of sync (run `listener onespan register` to fix)")
	}
}

// writeChanges prints what Register changes, one line per kind.
func (d Diff) writeChanges(w io.Writer) {
	if !d.URLMatches() {
		from := d.CurrentURL
		if from == "" {
			from = "(not set)"
		}
		fmt.Fprintf(w, "url:    %s -> %s\n", from, d.WantURL)
	}
	switch d.Key {
	case KeyNotSet:
		fmt.Fprintln(w, "key:    not set -> set")
	case KeyDiffers:
		fmt.Fprintln(w, "key:    differs -> replaced")
	}
	if len(d.Missing) > 0 {
		fmt.Fprintf(w, "events: add %s\n", strings.Join(d.Missing, ", "))
	}
	if len(d.Extra) > 0 {
		fmt.Fprintf(w, "events: remove %s\n", strings.Join(d.Extra, ", "))
	}
}

// CallbackAPI is the part of *Client that registration needs.
type CallbackAPI interface {
	GetCallback(ctx context.Context) (*Callback, error)
	SetCallback(ctx context.Context, cb Callback) error
}

// Status reads the registration and prints how it compares with want.
func Status(ctx context.Context, c CallbackAPI, want Desired, out io.Writer) (Diff, error) {
	cur, err := c.GetCallback(ctx)
	if err != nil {
		return Diff{}, err
	}
	d := Compare(cur, want)
	d.WriteStatus(out, cur)
	return d, nil
}

// Register reads the current registration, prints what differs and, unless
// dryRun, replaces it with want and reads it back to check. When everything
// already matches it sends nothing.
func Register(ctx context.Context, c CallbackAPI, want Desired, dryRun bool, out io.Writer) (Diff, error) {
	if want.URL == "" || want.Key == "" {
		return Diff{}, errors.New("onespan register: desired url and key are required")
	}
	cur, err := c.GetCallback(ctx)
	if err != nil {
		return Diff{}, err
	}
	d := Compare(cur, want)
	if d.InSync() {
		fmt.Fprintf(out, "callback registration already matches: %s, key matches, %d events; nothing to do\n", want.URL, len(want.Events))
		return d, nil
	}
	d.writeChanges(out)
	if dryRun {
		fmt.Fprintln(out, "dry run: nothing changed")
		return d, nil
	}
	if err := c.SetCallback(ctx, Callback(want)); err != nil {
		return d, err
	}
	after, err := c.GetCallback(ctx)
	if err != nil {
		return d, fmt.Errorf("onespan register: read back after update: %w", err)
	}
	if left := Compare(after, want); !left.InSync() {
		return d, fmt.Errorf("onespan register: registration still differs after update: %s", strings.Join(left.Problems(), "; "))
	}
	fmt.Fprintln(out, "callback registration updated")
	return d, nil
}
