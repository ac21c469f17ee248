package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestJSONRoundTrip proves that the committed fixture reads back to the same Trace and is
// written out again byte for byte, so that the document is stable and complete.
func TestJSONRoundTrip(t *testing.T) {
	tr := loadFixture(t)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, tr); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "trace.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteJSON(ReadJSON(trace.json)) differs from trace.json\n%s", firstDiff(buf.Bytes(), want))
	}
	back, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tr) {
		t.Error("ReadJSON(WriteJSON(t)) != t")
	}
	if !reflect.DeepEqual(tr, fixtureTrace()) {
		t.Error("testdata/trace.json is not what the simulation produces; run go test -update")
	}
}

// TestJSONDocument checks the documented top-level shape (docs/trace-json.md).
func TestJSONDocument(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, fixtureTrace()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SchemaVersion *int `json:"schema_version"`
		Runs          []struct {
			Name    string            `json:"name"`
			Samples []json.RawMessage `json:"samples"`
			Summary struct {
				Upstreams []json.RawMessage `json:"upstreams"`
				Shares    []json.RawMessage `json:"shares"`
				Verdict   string            `json:"verdict"`
			} `json:"summary"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != SchemaVersion {
		t.Fatalf("schema_version = %v, want %d", doc.SchemaVersion, SchemaVersion)
	}
	fx := fixtureTrace()
	for i, r := range doc.Runs {
		if len(r.Samples) != len(fx.Runs[i].Samples) {
			t.Errorf("run %q has %d samples, want %d", r.Name, len(r.Samples), len(fx.Runs[i].Samples))
		}
		if len(r.Summary.Upstreams) == 0 || len(r.Summary.Shares) == 0 || r.Summary.Verdict == "" {
			t.Errorf("run %q lacks its summary", r.Name)
		}
	}
}

func TestReadJSONErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"other version", `{"schema_version": 99, "runs": []}`, "schema_version 99"},
		{"no version", `{"runs": []}`, "schema_version 0"},
		{"not JSON", `<html>`, "reading trace JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadJSON(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadJSON error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
