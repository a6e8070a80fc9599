package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, expands, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(raw, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes raw YAML; lookup resolves ${VAR} references (os.LookupEnv
// in production, a map in tests). The result is validated.
func Parse(raw []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg, err := decode(raw, lookup)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func decode(raw []byte, lookup func(string) (string, bool)) (*Config, error) {
	// Expansion happens on parsed scalars, not on the raw text, so a secret
	// containing ": " or "#" cannot change the document's structure.
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	var missing []string
	expandNode(&doc, lookup, &missing)
	expanded, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("re-encode yaml: %w", err)
	}
	cfg := Default()
	if len(doc.Content) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(expanded))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("decode: %w", err)
		}
	}
	for _, t := range cfg.Tenants {
		if t != nil {
			ApplyTenantDefaults(t)
		}
	}
	cfg.UnsetVars = missing
	return &cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// Expand replaces ${VAR} and ${VAR:-default} in s. Variables that are unset
// and have no default are reported in missing and replaced by "" (a key left
// empty that is required then fails validation by its path). A set but
// empty variable stays empty, as in the shell's ${VAR}; ${VAR:-d} uses d for
// both unset and empty.
func Expand(s string, lookup func(string) (string, bool), missing *[]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		g := envRef.FindStringSubmatch(m)
		v, ok := lookup(g[1])
		if g[2] != "" {
			if !ok || v == "" {
				return g[3]
			}
			return v
		}
		if !ok {
			*missing = appendOnce(*missing, g[1])
		}
		return v
	})
}

func expandNode(n *yaml.Node, lookup func(string) (string, bool), missing *[]string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		v := Expand(n.Value, lookup, missing)
		if v != n.Value {
			n.Value = v
			// Let the encoder re-resolve the type: "${PORT:-8080}" becomes an
			// int, a key with YAML syntax in it gets quoted.
			n.Tag = ""
			n.Style = 0
		}
	}
	for _, c := range n.Content {
		expandNode(c, lookup, missing)
	}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
