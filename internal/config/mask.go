package config

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Masked returns a deep copy of c with every secret replaced by a marker, so
// it can be printed. Empty secrets stay empty: that is useful to see.
func (c *Config) Masked() *Config {
	out, _ := deepCopy(c)
	maskValue(reflect.ValueOf(out).Elem(), false)
	return out
}

// YAML renders the config (call Masked first when printing).
func (c *Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

const maskMarker = "*****"

func deepCopy(c *Config) (*Config, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	out := &Config{}
	if err := yaml.Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}

func maskValue(v reflect.Value, secret bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			maskValue(v.Elem(), secret)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			maskValue(v.Field(i), t.Field(i).Tag.Get("secret") == "true")
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			maskValue(v.Index(i), secret)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			cp := reflect.New(e.Type()).Elem()
			cp.Set(e)
			maskValue(cp, secret)
			v.SetMapIndex(k, cp)
		}
	case reflect.String:
		if secret && v.String() != "" {
			v.SetString(maskMarker)
		}
	}
}
