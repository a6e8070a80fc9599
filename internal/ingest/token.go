package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// TokenPath is OneSpan's "Authorization Server URL" for the OAuth2.0 callback
// option, below server.public_url.
const TokenPath = "/oauth2/token"

// CallbackTokens issues the bearer tokens of OneSpan's OAuth2.0 callback
// option and verifies them on callbacks (auth.CallbackTokens).
type CallbackTokens interface {
	Issue(tenant, clientID string) (token string, expires time.Time, err error)
	Verify(token string) (tenant string, err error)
}

// maxTokenRequestBytes bounds a token request body: a few form fields.
const maxTokenRequestBytes = 16 << 10

// tokenAnswer is the RFC 6749 §5.1 success body.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// oauthError is the RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// callbackClient is one client id's tenant and the digests of its secrets
// (several during a rotation).
type callbackClient struct {
	tenant  string
	digests [][32]byte
}

// decoyClient makes an unknown client id cost the same as a known one.
var decoyClient = &callbackClient{digests: [][32]byte{sha256.Sum256([]byte("no client has this secret: it only spends the same time"))}}

// authorized accepts the tenant's callback key or, when tokens are on, a
// bearer token issued for this tenant. why is for the log and holds no secret.
func (h *Handler) authorized(tenant string, keys *keyring, header string) (ok bool, why string) {
	if token, bearer := bearerToken(header); bearer && h.o.CallbackTokens != nil {
		got, err := h.o.CallbackTokens.Verify(token)
		switch {
		case err != nil:
			return false, "oauth2 " + err.Error()
		case got != tenant:
			return false, "oauth2 token of another tenant"
		}
		return true, ""
	}
	return keys.match(header), "callback key"
}

// bearerToken reads "Bearer <token>"; the scheme is case-insensitive (RFC 9110).
func bearerToken(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(header[len(scheme):]), true
}

// challenge is the WWW-Authenticate of a refused callback: RFC 6750's for a
// bearer attempt, so an OAuth2 client drops its token and fetches another.
func (h *Handler) challenge(header string) string {
	if _, bearer := bearerToken(header); bearer && h.o.CallbackTokens != nil {
		return `Bearer realm="countersign", error="invalid_token"`
	}
	return `Basic realm="countersign"`
}

// callbackClients indexes every tenant's callback_clients by client id. An id
// in two tenants (config validation refuses it) is dropped, not guessed.
func (h *Handler) callbackClients() map[string]*callbackClient {
	clients := map[string]*callbackClient{}
	ambiguous := map[string]bool{}
	for tenant, t := range h.o.Tenants {
		if t == nil {
			continue
		}
		for _, c := range t.CallbackClients {
			cl, ok := clients[c.ClientID]
			if ok && cl.tenant != tenant {
				ambiguous[c.ClientID] = true
				continue
			}
			if !ok {
				cl = &callbackClient{tenant: tenant}
				clients[c.ClientID] = cl
			}
			cl.digests = append(cl.digests, sha256.Sum256([]byte(c.ClientSecret)))
		}
	}
	for id := range ambiguous {
		delete(clients, id)
		h.o.Logger.Error("oauth2 client id configured in several tenants: refused", "client_id", id)
	}
	return clients
}

// tokenEndpoint serves POST /oauth2/token, the client-credentials grant of
// RFC 6749 §4.4. OneSpan's exact request is not documented, so credentials
// are taken from HTTP Basic or from form, JSON or query fields.
func (h *Handler) tokenEndpoint() echo.HandlerFunc {
	clients := h.callbackClients()
	return func(c echo.Context) error {
		res := c.Response().Header()
		res.Set("Cache-Control", "no-store")
		res.Set("Pragma", "no-cache")
		ip := c.RealIP()
		if blocked, left := h.limiter.Blocked(ip); blocked {
			res.Set("Retry-After", strconv.Itoa(int(left.Seconds())+1))
			return c.JSON(http.StatusTooManyRequests, oauthError{Error: "temporarily_unavailable", Description: "too many failed attempts"})
		}
		fields, err := tokenRequestFields(c.Request())
		if err != nil {
			return c.JSON(http.StatusBadRequest, oauthError{Error: "invalid_request", Description: err.Error()})
		}
		creds, basic := basicCredentials(c.Request())
		if !basic {
			creds = [][2]string{{fields.Get("client_id"), fields.Get("client_secret")}}
		}
		refuse := func() error {
			if basic || creds[0][0] == "" || c.Request().Header.Get(echo.HeaderAuthorization) != "" {
				// Also on a bare request: a challenge-response HTTP client
				// sends its credentials only after a Basic challenge.
				res.Set(echo.HeaderWWWAuthenticate, `Basic realm="countersign"`)
			}
			return c.JSON(http.StatusUnauthorized, oauthError{Error: "invalid_client"})
		}
		if creds[0][0] == "" {
			h.o.Logger.Info("oauth2 token refused: no client credentials", "remote", ip)
			return refuse()
		}
		clientID, client := authenticateClient(clients, creds)
		if client == nil {
			h.limiter.Fail(ip)
			// The id is logged only when it is configured: a caller's text
			// could be a secret typed into the wrong field.
			tenant := ""
			if cl, ok := clients[clientID]; ok {
				tenant = cl.tenant
			}
			h.o.Logger.Warn("oauth2 token refused: bad client credentials", "tenant", tenant, "client_id", clientID, "remote", ip, "basic", basic)
			return refuse()
		}
		if gt := fields.Get("grant_type"); gt != "" && gt != "client_credentials" {
			gt = gt[:min(len(gt), 64)]
			h.o.Logger.Warn("oauth2 token refused: unsupported grant type", "tenant", client.tenant, "client_id", clientID, "grant_type", gt)
			return c.JSON(http.StatusBadRequest, oauthError{Error: "unsupported_grant_type"})
		}
		token, expires, err := h.o.CallbackTokens.Issue(client.tenant, clientID)
		if err != nil {
			h.o.Logger.Error("oauth2 token not issued", "tenant", client.tenant, "client_id", clientID, "error", err)
			return c.JSON(http.StatusInternalServerError, oauthError{Error: "server_error"})
		}
		expiresIn := int64(expires.Sub(h.o.Now()) / time.Second)
		h.o.Logger.Info("oauth2 token issued", "tenant", client.tenant, "client_id", clientID, "expires_in", expiresIn, "remote", ip)
		return c.JSON(http.StatusOK, tokenAnswer{
			AccessToken: token, TokenType: "Bearer", ExpiresIn: expiresIn,
			// Scopes mean nothing here; echoing the request satisfies
			// clients that check the granted scope.
			Scope: fields.Get("scope"),
		})
	}
}

// basicCredentials reads HTTP Basic client authentication. RFC 6749 §2.3.1
// form-encodes id and secret first; many clients do not, so both readings
// are candidates.
func basicCredentials(req *http.Request) ([][2]string, bool) {
	id, secret, ok := req.BasicAuth()
	if !ok {
		return nil, false
	}
	creds := [][2]string{{id, secret}}
	uid, err1 := url.QueryUnescape(id)
	usecret, err2 := url.QueryUnescape(secret)
	if err1 == nil && err2 == nil && (uid != id || usecret != secret) {
		creds = append(creds, [2]string{uid, usecret})
	}
	return creds, true
}

// authenticateClient compares the secret digest against every secret of the
// client (or of a decoy) without stopping early. The id is returned only when
// it is configured.
func authenticateClient(clients map[string]*callbackClient, creds [][2]string) (string, *callbackClient) {
	var found *callbackClient
	foundID := ""
	for _, cr := range creds {
		cl, known := clients[cr[0]]
		if !known {
			cl = decoyClient
		} else {
			foundID = cr[0]
		}
		d := sha256.Sum256([]byte(cr[1]))
		ok := 0
		for i := range cl.digests {
			ok |= subtle.ConstantTimeCompare(d[:], cl.digests[i][:])
		}
		if ok == 1 && known && found == nil {
			found = cl
		}
	}
	return foundID, found
}

// tokenRequestFields reads the parameters from a form or JSON body, with the
// URL query as a fallback (some OneSpan OAuth flows put them there).
func tokenRequestFields(req *http.Request) (url.Values, error) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxTokenRequestBytes+1))
	if err != nil {
		return nil, errString("could not read body")
	}
	if len(body) > maxTokenRequestBytes {
		return nil, errString("body too large")
	}
	fields := url.Values{}
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if len(strings.TrimSpace(string(body))) > 0 {
		if mt == echo.MIMEApplicationJSON {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, errString("malformed JSON body")
			}
			for k, v := range m {
				if s, ok := v.(string); ok {
					fields.Set(k, s)
				}
			}
		} else {
			if fields, err = url.ParseQuery(string(body)); err != nil {
				return nil, errString("malformed form body")
			}
		}
	}
	for k, v := range req.URL.Query() {
		if fields.Get(k) == "" && len(v) > 0 {
			fields.Set(k, v[0])
		}
	}
	return fields, nil
}

type errString string

func (e errString) Error() string { return string(e) }
