package report

import (
	"encoding/json"
	"fmt"
	"io"
)

// SchemaVersion is the version of the JSON document written by WriteJSON
// (docs/trace-json.md). It changes when a field changes meaning or goes away.
const SchemaVersion = 1

// jsonDoc is the JSON document: the Trace with each Run's summary next to its Samples.
type jsonDoc struct {
	SchemaVersion int       `json:"schema_version"`
	Title         string    `json:"title,omitempty"`
	Comparison    string    `json:"comparison,omitempty"`
	Runs          []jsonRun `json:"runs"`
}

type jsonRun struct {
	Run
	Summary RunSummary `json:"summary"`
}

// WriteJSON writes every Sample of every Run together with the summaries, as described in
// docs/trace-json.md.
func WriteJSON(w io.Writer, t Trace) error {
	sum := Summarize(t)
	doc := jsonDoc{SchemaVersion: SchemaVersion, Title: t.Title, Comparison: sum.Comparison}
	for i, r := range t.Runs {
		doc.Runs = append(doc.Runs, jsonRun{Run: r, Summary: sum.Runs[i]})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// ReadJSON reads a document written by WriteJSON back into a Trace, so that a saved trace
// can be rendered again. Summaries in the document are ignored: they are recomputed.
func ReadJSON(r io.Reader) (Trace, error) {
	var doc jsonDoc
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return Trace{}, fmt.Errorf("report: reading trace JSON: %w", err)
	}
	if doc.SchemaVersion != SchemaVersion {
		return Trace{}, fmt.Errorf("report: trace JSON has schema_version %d, want %d", doc.SchemaVersion, SchemaVersion)
	}
	t := Trace{Title: doc.Title}
	for _, r := range doc.Runs {
		t.Runs = append(t.Runs, r.Run)
	}
	return t, nil
}
