package onespan

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/countersign/countersign/internal/fault"
)

// Callback is the account's callback registration (api/model/Callback.java).
// Key is the callback key OneSpan sends as "Authorization: Basic <key>": a
// secret, never print it.
type Callback struct {
	URL    string   `json:"url"`
	Key    string   `json:"key"`
	Events []string `json:"events"`
}

// String hides the key so a Callback can be logged or printed with %v.
func (cb Callback) String() string {
	k := "not set"
	if cb.Key != "" {
		k = "set"
	}
	return "callback{url: " + cb.URL + ", key: " + k + ", events: " + jsonList(cb.Events) + "}"
}

func jsonList(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// GetCallback reads GET /api/callback. An account without a registration
// answers with empty fields (or 404, which is read the same way).
func (c *Client) GetCallback(ctx context.Context) (*Callback, error) {
	var cb Callback
	err := c.getJSON(ctx, "get callback", "/callback", nil, &cb)
	if err != nil {
		if StatusCode(err) == http.StatusNotFound {
			return &Callback{}, nil
		}
		return nil, err
	}
	return &cb, nil
}

// SetCallback creates or replaces the registration with POST /api/callback.
func (c *Client) SetCallback(ctx context.Context, cb Callback) error {
	if cb.Events == nil {
		cb.Events = []string{}
	}
	body, err := json.Marshal(cb)
	if err != nil {
		return fault.New(fault.Permanent, "onespan set callback", err)
	}
	resp, err := c.do(ctx, request{op: "set callback", method: http.MethodPost, path: "/callback", body: body, accept: "application/json"})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}
