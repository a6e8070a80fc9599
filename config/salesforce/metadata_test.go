// Package salesforce_test checks the SFDX source in this directory against
// the Salesforce contract (ARCHITECTURE §6), the worker's configured names
// (config.ApplyTenantDefaults) and the emulator (sfsandbox.DefaultObjects):
// a field the worker writes that the metadata lacks fails here, not in an
// admin's org.
package salesforce_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

const (
	metadataNS = "http://soap.sforce.com/2006/04/metadata"
	sourceDir  = "force-app/main/default"
)

type customField struct {
	XMLName          xml.Name  `xml:"CustomField"`
	FullName         string    `xml:"fullName"`
	Type             string    `xml:"type"`
	Length           int       `xml:"length"`
	ExternalID       bool      `xml:"externalId"`
	Unique           bool      `xml:"unique"`
	CaseSensitive    bool      `xml:"caseSensitive"`
	Required         bool      `xml:"required"`
	ReferenceTo      string    `xml:"referenceTo"`
	RelationshipName string    `xml:"relationshipName"`
	DeleteConstraint string    `xml:"deleteConstraint"`
	ValueSet         *valueSet `xml:"valueSet"`
}

type valueSet struct {
	Restricted bool `xml:"restricted"`
	Values     []struct {
		FullName string `xml:"fullName"`
	} `xml:"valueSetDefinition>value"`
}

type customObject struct {
	XMLName    xml.Name `xml:"CustomObject"`
	Label      string   `xml:"label"`
	Plural     string   `xml:"pluralLabel"`
	Deployment string   `xml:"deploymentStatus"`
	Sharing    string   `xml:"sharingModel"`
	NameField  struct {
		Type          string `xml:"type"`
		DisplayFormat string `xml:"displayFormat"`
	} `xml:"nameField"`
}

type permissionSet struct {
	XMLName xml.Name `xml:"PermissionSet"`
	Label   string   `xml:"label"`
	Fields  []struct {
		Field    string `xml:"field"`
		Editable bool   `xml:"editable"`
		Readable bool   `xml:"readable"`
	} `xml:"fieldPermissions"`
	Objects []objectPermission `xml:"objectPermissions"`
}

type objectPermission struct {
	Object string `xml:"object"`
	Create bool   `xml:"allowCreate"`
	Edit   bool   `xml:"allowEdit"`
	Read   bool   `xml:"allowRead"`
}

// allowedChildren are the top-level elements each file kind may have: a
// misspelt element would be ignored by encoding/xml but refused by a deploy.
var allowedChildren = map[string][]string{
	"CustomField": {"fullName", "caseSensitive", "defaultValue", "deleteConstraint", "description", "externalId",
		"inlineHelpText", "label", "length", "referenceTo", "relationshipLabel", "relationshipName", "required",
		"trackTrending", "type", "unique", "valueSet"},
	"CustomObject": {"deploymentStatus", "description", "enableActivities", "enableBulkApi", "enableFeeds",
		"enableHistory", "enableReports", "enableSearch", "enableSharing", "enableStreamingApi",
		"externalSharingModel", "label", "nameField", "pluralLabel", "sharingModel", "visibility"},
	"PermissionSet": {"description", "fieldPermissions", "hasActivationRequired", "label", "objectPermissions"},
}

// metadata is everything parsed from force-app.
type metadata struct {
	objects map[string]customObject           // custom objects by API name
	fields  map[string]map[string]customField // object -> field -> field
	perms   []permissionSet
}

// strictCheck parses b as one well-formed XML document with a root in the
// Metadata API namespace whose children are all known, and returns the root.
func strictCheck(b []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	depth := 0
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				if root != "" {
					return "", errors.New("more than one root element")
				}
				root = t.Name.Local
				if t.Name.Space != metadataNS {
					return "", fmt.Errorf("root %s is in namespace %q, want %q", root, t.Name.Space, metadataNS)
				}
				if _, ok := allowedChildren[root]; !ok {
					return "", fmt.Errorf("unexpected root element %s", root)
				}
			}
			if depth == 2 && !slices.Contains(allowedChildren[root], t.Name.Local) {
				return "", fmt.Errorf("%s has an unknown element <%s>", root, t.Name.Local)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return "", errors.New("text outside the root element")
			}
		}
	}
	if root == "" {
		return "", errors.New("no root element")
	}
	return root, nil
}

func load(t *testing.T) metadata {
	t.Helper()
	md := metadata{objects: map[string]customObject{}, fields: map[string]map[string]customField{}}
	err := filepath.WalkDir(sourceDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(sourceDir, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		root, err := strictCheck(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if !bytes.HasPrefix(b, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
			return fmt.Errorf("%s: no UTF-8 XML declaration", path)
		}
		// The CLI silently skips misnamed files, so every name is checked.
		switch {
		case len(parts) == 3 && parts[0] == "objects" && parts[2] == parts[1]+".object-meta.xml" && root == "CustomObject":
			var o customObject
			if err := xml.Unmarshal(b, &o); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			md.objects[parts[1]] = o
		case len(parts) == 4 && parts[0] == "objects" && parts[2] == "fields" && strings.HasSuffix(parts[3], ".field-meta.xml") && root == "CustomField":
			var f customField
			if err := xml.Unmarshal(b, &f); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if want := strings.TrimSuffix(parts[3], ".field-meta.xml"); f.FullName != want {
				return fmt.Errorf("%s: fullName %q, want %q (the file name)", path, f.FullName, want)
			}
			if md.fields[parts[1]] == nil {
				md.fields[parts[1]] = map[string]customField{}
			}
			md.fields[parts[1]][f.FullName] = f
		case len(parts) == 2 && parts[0] == "permissionsets" && strings.HasSuffix(parts[1], ".permissionset-meta.xml") && root == "PermissionSet":
			var p permissionSet
			if err := xml.Unmarshal(b, &p); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			md.perms = append(md.perms, p)
		default:
			return fmt.Errorf("%s: a %s in a place or under a name the Salesforce CLI does not read", path, root)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func (md metadata) field(t *testing.T, object, name string) (customField, bool) {
	t.Helper()
	f, ok := md.fields[object][name]
	if !ok {
		t.Errorf("%s.%s: no field in %s", object, name, sourceDir)
	}
	return f, ok
}

func TestProjectFile(t *testing.T) {
	b, err := os.ReadFile("sfdx-project.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		PackageDirectories []struct {
			Path    string `json:"path"`
			Default bool   `json:"default"`
		} `json:"packageDirectories"`
		SourceAPIVersion string `json:"sourceApiVersion"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if len(p.PackageDirectories) != 1 || p.PackageDirectories[0].Path != "force-app" || !p.PackageDirectories[0].Default {
		t.Errorf("packageDirectories = %+v, want the one default force-app", p.PackageDirectories)
	}
	// The worker's default API version (config.ApplyTenantDefaults).
	tc := &config.Tenant{}
	config.ApplyTenantDefaults(tc)
	if "v"+p.SourceAPIVersion != tc.Salesforce.APIVersion {
		t.Errorf("sourceApiVersion %s, want the worker's default %s", p.SourceAPIVersion, tc.Salesforce.APIVersion)
	}
}

// TestContractFields: every object and field the worker writes by default
// exists with the type and flags of ARCHITECTURE §6.
func TestContractFields(t *testing.T) {
	md := load(t)
	tc := &config.Tenant{}
	config.ApplyTenantDefaults(tc)
	o := tc.Salesforce.Objects

	for _, name := range []string{o.Transaction.Name, o.Event.Name} {
		obj, ok := md.objects[name]
		if !ok {
			t.Errorf("no custom object %s", name)
			continue
		}
		if obj.Deployment != "Deployed" || obj.Label == "" || obj.Plural == "" || obj.Sharing == "" || obj.NameField.Type == "" {
			t.Errorf("%s: incomplete object definition %+v", name, obj)
		}
	}
	if _, ok := md.objects[o.Document.Name]; ok {
		t.Errorf("%s is a standard object: only its custom field belongs here", o.Document.Name)
	}

	extID := func(object, name string) {
		if f, ok := md.field(t, object, name); ok {
			if f.Type != "Text" || f.Length != 255 || !f.ExternalID || !f.Unique || f.Required {
				t.Errorf("%s.%s: %+v, want Text(255), external id, unique, not required", object, name, f)
			}
		}
	}
	text := func(object, name string) {
		if f, ok := md.field(t, object, name); ok {
			// The worker truncates what it writes to 255 characters.
			if f.Type != "Text" || f.Length < 255 || f.Required {
				t.Errorf("%s.%s: %+v, want Text of at least 255, not required", object, name, f)
			}
		}
	}
	dateTime := func(object, name string) {
		if f, ok := md.field(t, object, name); ok && (f.Type != "DateTime" || f.Required) {
			t.Errorf("%s.%s: type %s, want DateTime, not required", object, name, f.Type)
		}
	}

	tr := o.Transaction
	extID(tr.Name, tr.PackageID)
	text(tr.Name, tr.LastEvent)
	dateTime(tr.Name, tr.LastEventAt)
	dateTime(tr.Name, tr.CompletedAt)
	if f, ok := md.field(t, tr.Name, tr.Status); ok {
		switch f.Type {
		case "Text":
			if f.Length < 40 {
				t.Errorf("%s.%s: length %d is too short for a status", tr.Name, tr.Status, f.Length)
			}
		case "Picklist":
			// Unrestricted, or a status re-read after PACKAGE_RESTORE could be refused.
			if f.ValueSet == nil || f.ValueSet.Restricted {
				t.Errorf("%s.%s: picklist must be unrestricted", tr.Name, tr.Status)
			}
			var values []string
			if f.ValueSet != nil {
				for _, v := range f.ValueSet.Values {
					values = append(values, v.FullName)
				}
			}
			for _, ev := range callback.Names {
				if eff, s := callback.StatusFor(ev); eff == callback.SetStatus && !slices.Contains(values, s) {
					t.Errorf("%s.%s: picklist lacks %s (set by %s)", tr.Name, tr.Status, s, ev)
				}
			}
		default:
			t.Errorf("%s.%s: type %s, want Picklist or Text", tr.Name, tr.Status, f.Type)
		}
	}

	ev := o.Event
	extID(ev.Name, ev.EventKey)
	text(ev.Name, ev.EventName)
	text(ev.Name, ev.SessionUser)
	text(ev.Name, ev.DocumentID)
	text(ev.Name, ev.Message)
	dateTime(ev.Name, ev.OccurredAt)
	// The worker writes the relationship (Transaction__r: {Package_Id__c: ...});
	// its lookup field is the same name with __c.
	if !strings.HasSuffix(ev.Transaction, "__r") {
		t.Fatalf("event transaction %q is not a relationship name", ev.Transaction)
	}
	lookup := strings.TrimSuffix(ev.Transaction, "__r") + "__c"
	if f, ok := md.field(t, ev.Name, lookup); ok {
		if f.Type != "Lookup" || f.ReferenceTo != tr.Name || f.Required || f.DeleteConstraint == "Restrict" {
			t.Errorf("%s.%s: %+v, want an optional Lookup to %s", ev.Name, lookup, f, tr.Name)
		}
		// relationshipName is the child relationship seen from the parent;
		// it must not be empty or a deploy fails.
		if f.RelationshipName == "" || strings.Contains(f.RelationshipName, "__") {
			t.Errorf("%s.%s: relationshipName %q, want a plain child relationship name", ev.Name, lookup, f.RelationshipName)
		}
	}

	extID(o.Document.Name, o.Document.DocumentKey)

	// Nothing else: a stray field would deploy without anything writing it.
	want := map[string][]string{
		tr.Name:         {tr.PackageID, tr.Status, tr.LastEvent, tr.LastEventAt, tr.CompletedAt},
		ev.Name:         {ev.EventKey, lookup, ev.EventName, ev.OccurredAt, ev.SessionUser, ev.DocumentID, ev.Message},
		o.Document.Name: {o.Document.DocumentKey},
	}
	for object, fields := range md.fields {
		for name := range fields {
			if !slices.Contains(want[object], name) {
				t.Errorf("%s.%s is not in the contract", object, name)
			}
		}
	}
}

// TestMatchesEmulator: the emulator's declared objects (external ids,
// datetimes, lengths, relationships) are the ones this metadata creates, so a
// test green against the emulator is green against a deployed org.
func TestMatchesEmulator(t *testing.T) {
	md := load(t)
	specs := sfsandbox.DefaultObjects()
	for _, object := range []string{sfsandbox.ObjTransaction, sfsandbox.ObjEvent, sfsandbox.ObjContentVersion} {
		spec, ok := specs[object]
		if !ok {
			t.Errorf("emulator declares no %s", object)
			continue
		}
		if _, ok := md.fields[object]; !ok {
			t.Errorf("no metadata for %s", object)
			continue
		}
		for _, name := range spec.ExternalIDs {
			if f, ok := md.field(t, object, name); ok && (!f.ExternalID || !f.Unique) {
				t.Errorf("%s.%s: the emulator upserts by it, the metadata does not make it a unique external id", object, name)
			}
		}
		for _, name := range spec.DateTimeFields {
			if f, ok := md.field(t, object, name); ok && f.Type != "DateTime" {
				t.Errorf("%s.%s: the emulator wants a DateTime, metadata says %s", object, name, f.Type)
			}
		}
		for name, n := range spec.MaxLength {
			if !strings.HasSuffix(name, "__c") {
				continue // standard field (ContentVersion.Title)
			}
			if f, ok := md.field(t, object, name); ok && f.Length != n {
				t.Errorf("%s.%s: the emulator allows %d characters, metadata %d", object, name, n, f.Length)
			}
		}
		for rel, r := range spec.Relationships {
			if want := strings.TrimSuffix(rel, "__r") + "__c"; r.Field != want {
				t.Errorf("emulator relationship %s uses field %s; Salesforce names it %s", rel, r.Field, want)
			}
			if f, ok := md.field(t, object, r.Field); ok && (f.Type != "Lookup" || f.ReferenceTo != r.Object) {
				t.Errorf("%s.%s: %s to %s, the emulator says lookup to %s", object, r.Field, f.Type, f.ReferenceTo, r.Object)
			}
		}
	}
}

// TestPermissionSet: the integration user's permission set grants every
// field the worker writes; deployed fields are invisible without it.
func TestPermissionSet(t *testing.T) {
	md := load(t)
	if len(md.perms) != 1 {
		t.Fatalf("%d permission sets, want 1", len(md.perms))
	}
	ps := md.perms[0]
	granted := map[string]bool{}
	for _, f := range ps.Fields {
		if f.Editable && f.Readable {
			granted[f.Field] = true
		}
	}
	for object, fields := range md.fields {
		for name, f := range fields {
			if f.Required {
				continue // required fields cannot (and need not) be granted
			}
			if !granted[object+"."+name] {
				t.Errorf("permission set %s does not grant read and edit on %s.%s", ps.Label, object, name)
			}
		}
	}
	for object := range md.objects {
		i := slices.IndexFunc(ps.Objects, func(p objectPermission) bool { return p.Object == object })
		if i < 0 || !ps.Objects[i].Create || !ps.Objects[i].Edit || !ps.Objects[i].Read {
			t.Errorf("permission set %s does not grant create, read and edit on %s", ps.Label, object)
		}
	}
}

// TestStrictCheckRefuses proves the checker catches what a deploy refuses.
func TestStrictCheckRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"unclosed":        `<CustomField xmlns="` + metadataNS + `"><fullName>A__c</fullName>`,
		"wrong namespace": `<CustomField xmlns="urn:x"><fullName>A__c</fullName></CustomField>`,
		"unknown element": `<CustomField xmlns="` + metadataNS + `"><fulName>A__c</fulName></CustomField>`,
		"bad entity":      `<CustomField xmlns="` + metadataNS + `"><label>a &nbsp; b</label></CustomField>`,
		"two roots":       `<CustomField xmlns="` + metadataNS + `"/><CustomField xmlns="` + metadataNS + `"/>`,
	} {
		if _, err := strictCheck([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := strictCheck([]byte(`<CustomField xmlns="` + metadataNS + `"><fullName>A__c</fullName></CustomField>`)); err != nil {
		t.Errorf("valid document refused: %v", err)
	}
}
