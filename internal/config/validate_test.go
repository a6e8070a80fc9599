package config

import (
	"strings"
	"testing"
)

// twoTenants has acme and globex with the given callback_clients lines.
func twoTenants(acmeClients, globexClients string) string {
	tenant := func(id, clients string) string {
		return `
  ` + id + `:
    callback_keys: ["fake-callback-key-` + id + `"]
    callback_clients: ` + clients + `
    onespan: { api_key: "fake-onespan-key" }
    salesforce: { client_id: "fake-client-id", client_secret: "fake-client-secret" }`
	}
	return `
secrets: { keys: ["` + fakeKey + `"] }
admin: { tokens: ["fake-admin-token-0123456789"] }
tenants:` + tenant("acme", acmeClients) + tenant("globex", globexClients) + "\n"
}

func TestValidateCallbackClients(t *testing.T) {
	const secretA, secretB = "fake-client-secret-aaaa", "fake-client-secret-bbbb"
	cases := []struct {
		name          string
		acme, globex  string
		want, notWant string
	}{
		{"distinct ids", `[{client_id: "oss-acme", client_secret: "` + secretA + `"}]`,
			`[{client_id: "oss-globex", client_secret: "` + secretB + `"}]`, "", ""},
		{"one id in one tenant twice is a secret rotation",
			`[{client_id: "oss", client_secret: "` + secretA + `"}, {client_id: "oss", client_secret: "` + secretB + `"}]`, `[]`, "", ""},
		{"one id in two tenants", `[{client_id: "oss", client_secret: "` + secretA + `"}]`,
			`[{client_id: "oss", client_secret: "` + secretB + `"}]`,
			`tenants.globex.callback_clients[0].client_id: "oss" is already a client of tenant acme`, "tenants.acme.callback_clients"},
		{"colon in id", `[{client_id: "oss:1", client_secret: "` + secretA + `"}]`, `[]`,
			`tenants.acme.callback_clients[0].client_id: must not contain ':'`, ""},
		{"short secret", `[{client_id: "oss", client_secret: "fake-short"}]`, `[]`,
			`tenants.acme.callback_clients[0].client_secret: must be at least 16 characters`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(twoTenants(tc.acme, tc.globex)), env(nil))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("the first owner is blamed too:\n%v", err)
			}
			for _, s := range []string{secretA, secretB} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error echoes a client secret:\n%v", err)
				}
			}
		})
	}
}
