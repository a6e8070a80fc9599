package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/countersign/countersign/internal/admin"
)

// adminFlags are the flags of every command that calls the admin API of a
// running listener. The token never comes from a flag (it would show in ps
// and shell history): $LISTENER_ADMIN_TOKEN or --token-file.
type adminFlags struct {
	server    string
	tokenFile string
	output    string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	server := os.Getenv("LISTENER_SERVER")
	if server == "" {
		server = "http://localhost:8080"
	}
	cmd.Flags().StringVar(&f.server, "server", server, "base URL of the listener (env LISTENER_SERVER)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the admin token (default: $LISTENER_ADMIN_TOKEN)")
	cmd.Flags().StringVar(&f.output, "output", "table", "output format: table or json")
}

// adminClient calls /api/admin/v1 with the admin token.
type adminClient struct {
	server string
	token  string
	output string
	hc     *http.Client
}

func (f *adminFlags) client() (*adminClient, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("--output must be table or json, not %q", f.output)
	}
	token := os.Getenv("LISTENER_ADMIN_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no admin token: set LISTENER_ADMIN_TOKEN or pass --token-file FILE")
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("the admin token must be one line without spaces")
	}
	return &adminClient{server: strings.TrimRight(f.server, "/"), token: token, output: f.output,
		hc: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is a non-2xx answer of the admin API.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string {
	if e.status == http.StatusUnauthorized {
		return "the listener refused the admin token (401): check LISTENER_ADMIN_TOKEN or --token-file"
	}
	return fmt.Sprintf("listener answered %d: %s", e.status, e.message)
}

// do sends body (JSON, or nothing when nil) and decodes a 2xx answer into out.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+admin.APIPrefix+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling the listener at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the listener's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &apiError{status: resp.StatusCode, message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the listener's answer: %w", err)
	}
	return nil
}

func (c *adminClient) tenant(ctx context.Context, id string) (admin.Tenant, error) {
	var t admin.Tenant
	err := c.do(ctx, http.MethodGet, "/tenants/"+id, nil, &t)
	return t, err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTenants writes the tenants as a table: state, why, and the age of
// their grant, never a token.
func printTenants(w io.Writer, ts []admin.Tenant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSTATE\tLAST REFRESH\tTOKEN AGE\tPENDING\tDEAD LETTERS\tREASON")
	for _, t := range ts {
		state := t.State
		if t.ThrottledUntil != nil {
			state += " (throttled until " + t.ThrottledUntil.Format(time.RFC3339) + ")"
		}
		last, age := "-", "-"
		if t.Grant.LastRefresh != nil {
			last = t.Grant.LastRefresh.Local().Format("2006-01-02 15:04:05")
		}
		if t.Grant.TokenAgeSeconds != nil {
			age = (time.Duration(*t.Grant.TokenAgeSeconds) * time.Second).String()
		}
		reason := t.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", t.ID, state, last, age, t.PendingMessages, t.DeadLetters, reason)
	}
	return tw.Flush()
}
