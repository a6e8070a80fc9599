package salesforce

import "testing"

func TestParseLimitInfo(t *testing.T) {
	cases := []struct {
		header string
		want   LimitInfo
		ok     bool
	}{
		{"api-usage=10018/100000", LimitInfo{10018, 100000}, true},
		{"api-usage=18/5000, per-app-api-usage=17/250(appName=sample-app)", LimitInfo{18, 5000}, true},
		{"per-app-api-usage=17/250(appName=sample-app), api-usage=25/5000", LimitInfo{25, 5000}, true},
		{"api-usage=1/750,api-bursts=1/750", LimitInfo{1, 750}, true},
		{" api-usage=0/15000 ", LimitInfo{0, 15000}, true},
		{"per-app-api-usage=17/250(appName=x)", LimitInfo{}, false},
		{"api-usage=abc/100", LimitInfo{}, false},
		{"api-usage=5/0", LimitInfo{}, false},
		{"api-usage=5", LimitInfo{}, false},
		{"", LimitInfo{}, false},
	}
	for _, tc := range cases {
		got, ok := ParseLimitInfo(tc.header)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseLimitInfo(%q) = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLimitRatio(t *testing.T) {
	if r := (LimitInfo{Used: 25, Max: 100}).Ratio(); r != 0.25 {
		t.Fatalf("ratio = %v", r)
	}
	if r := (LimitInfo{}).Ratio(); r != 0 {
		t.Fatalf("unknown ratio = %v", r)
	}
}
