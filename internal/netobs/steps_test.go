package netobs

import (
	"reflect"
	"testing"
	"time"
)

func TestStepSpans(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		steps []Step
		want  []Span
		// Lookup, VCS, Go of SetStepPhases
		lookup, vcs, goRun time.Duration
	}{
		{name: "none"},
		{
			name: "a run with a lookup then git commands",
			steps: []Step{
				{Phase: PhaseLookup, Offset: 12 * ms, Duration: 14 * ms},
				{Phase: PhaseVCS, Offset: 30 * ms, Duration: 60 * ms},
				{Phase: PhaseVCS, Offset: 90 * ms, Duration: 5 * ms}, // right after: merged
				{Phase: PhaseGo, Offset: 2 * ms, Duration: 100 * ms},
			},
			want: []Span{
				{PhaseGo, 2 * ms, 12 * ms}, {PhaseLookup, 12 * ms, 26 * ms}, {PhaseGo, 26 * ms, 30 * ms},
				{PhaseVCS, 30 * ms, 95 * ms}, {PhaseGo, 95 * ms, 102 * ms},
			},
			lookup: 14 * ms, vcs: 65 * ms, goRun: 21 * ms,
		},
		{
			name: "parallel lookups count once, and lookup wins over vcs",
			steps: []Step{
				{Phase: PhaseLookup, Offset: 0, Duration: 10 * ms},
				{Phase: PhaseLookup, Offset: 5 * ms, Duration: 10 * ms},
				{Phase: PhaseVCS, Offset: 12 * ms, Duration: 8 * ms},
			},
			want:   []Span{{PhaseLookup, 0, 15 * ms}, {PhaseVCS, 15 * ms, 20 * ms}},
			lookup: 15 * ms, vcs: 5 * ms,
		},
	} {
		if got := StepSpans(tc.steps); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: StepSpans = %v; want %v", tc.name, got, tc.want)
		}
		s := Sample{Steps: tc.steps}
		s.SetStepPhases()
		if s.Lookup != tc.lookup || s.VCS != tc.vcs || s.Go != tc.goRun {
			t.Errorf("%s: lookup %s, vcs %s, go %s; want %s, %s, %s", tc.name, s.Lookup, s.VCS, s.Go, tc.lookup, tc.vcs, tc.goRun)
		}
		if s.PhaseDuration(PhaseLookup) != s.Lookup || s.PhaseDuration(PhaseVCS) != s.VCS || s.PhaseDuration(PhaseGo) != s.Go {
			t.Errorf("%s: PhaseDuration disagrees with the fields", tc.name)
		}
	}
}
