package server

import "testing"

// TestFastHTTP runs the server's protocol tests again with every request sent to the
// fasthttp front (ServeFast) over loopback instead of ServeHTTP in process: both fronts
// must give the same answers. newEnv starts the front for tests under this name.
func TestFastHTTP(t *testing.T) {
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"BadInput", TestBadInput},
		{"LoopGuard", TestLoopGuard},
		{"Protocol", TestProtocol},
		{"Chain", TestChain},
		{"ChainEnds", TestChainEnds},
		{"HotCache", TestHotCache},
		{"ListTTL", TestListTTL},
		{"ListFailures", TestListFailures},
		{"NegativeCache", TestNegativeCache},
		{"VersionQuery", TestVersionQuery},
		{"Stampede", TestStampede},
		{"RequestLogAndMetrics", TestRequestLogAndMetrics},
		{"ModNeverPullsZip", TestModNeverPullsZip},
		{"UpstreamMisbehaviour", TestUpstreamMisbehaviour},
		{"ServerTimingOfFilledAnswers", TestServerTimingOfFilledAnswers},
		{"Settle", TestSettle},
	} {
		t.Run(tt.name, tt.test)
	}
}
