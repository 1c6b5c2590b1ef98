package bench

import (
	"strings"
	"testing"
	"time"
)

func dur(ms float64) *time.Duration {
	d := msDuration(ms)
	return &d
}

// TestJudgeStep: the legacy and sustain rules on step figures. A step of
// 1M deliveries/s (1000 messages/s) is judged with p99 bound 500ms.
func TestJudgeStep(t *testing.T) {
	kept := stepFigures{targetPublish: 1000, publish: 1000, targetDeliveries: 1e6, deliveries: 1e6, p99: 40 * time.Millisecond, firstP50: dur(3), secondP50: dur(3.2)}
	with := func(change func(*stepFigures)) stepFigures {
		f := kept
		change(&f)
		return f
	}
	for _, c := range []struct {
		name         string
		f            stepFigures
		legacy, sstn string // conditions failed, comma-separated
	}{
		{"kept up", kept, "", ""},
		{"96% delivered: enough for legacy, not for sustain", with(func(f *stepFigures) { f.deliveries = 0.96e6 }), "", condDelivery},
		{"97% delivered and published", with(func(f *stepFigures) { f.deliveries, f.publish = 0.97e6, 970 }), "", ""},
		{"94% published", with(func(f *stepFigures) { f.publish = 940 }), condPublish, condPublish},
		{"p99 above the bound", with(func(f *stepFigures) { f.p99 = 501 * time.Millisecond }), condP99, condP99},
		{"p99 at the bound", with(func(f *stepFigures) { f.p99 = 500 * time.Millisecond }), "", ""},
		{"p50 ×1.6: a growing queue", with(func(f *stepFigures) { f.firstP50, f.secondP50 = dur(10), dur(16) }), "", condP50Growth},
		{"p50 ×1.5 exactly", with(func(f *stepFigures) { f.firstP50, f.secondP50 = dur(10), dur(15) }), "", ""},
		{"sub-millisecond p50 doubling, within +2ms", with(func(f *stepFigures) { f.firstP50, f.secondP50 = dur(0.4), dur(2.4) }), "", ""},
		{"sub-millisecond p50 beyond +2ms", with(func(f *stepFigures) { f.firstP50, f.secondP50 = dur(0.4), dur(2.5) }), "", condP50Growth},
		{"p50 falling", with(func(f *stepFigures) { f.firstP50, f.secondP50 = dur(30), dur(5) }), "", ""},
		{"second half without samples", with(func(f *stepFigures) { f.secondP50 = nil; f.deliveries = 0.5e6 }), condDelivery, condDelivery},
		{"everything", with(func(f *stepFigures) {
			f.publish, f.deliveries, f.p99, f.firstP50, f.secondP50 = 500, 0.5e6, time.Second, dur(100), dur(400)
		}), "publish,delivery,p99", "publish,delivery,p99,p50_growth"},
	} {
		for _, r := range []struct {
			rule StepRule
			want string
		}{{RuleLegacy, c.legacy}, {RuleSustain, c.sstn}} {
			fails := judgeStep(r.rule, c.f, 500*time.Millisecond)
			var got []string
			for _, f := range fails {
				got = append(got, f.cond)
				if f.reason == "" {
					t.Errorf("%s, %s: condition %s without a reason", c.name, r.rule, f.cond)
				}
			}
			if strings.Join(got, ",") != r.want {
				t.Errorf("%s, %s rule: failed %v, want [%s]", c.name, r.rule, got, r.want)
			}
		}
	}
}

// TestStepFail: the conditions failed accumulate once each, and a step
// found behind stays behind.
func TestStepFail(t *testing.T) {
	var s StepReport
	s.fail(nil)
	if s.Behind || s.Reason != "" {
		t.Fatalf("no failure made the step %+v", s)
	}
	s.fail([]stepFailure{{condP99, "p99 1s above 500ms"}})
	s.fail([]stepFailure{{condP99, "p99 2s above 500ms"}, {condP50Growth, "p50 grew"}})
	if !s.Behind || strings.Join(s.Failed, ",") != "p99,p50_growth" || s.Reason != "p99 1s above 500ms; p50 grew" {
		t.Fatalf("step %+v", s)
	}
	p50 := 2.0
	s = StepReport{TargetPublishPerSec: 10, PublishPerSec: 10, TargetDeliveriesPerSec: 100, DeliveriesPerSec: 100, FirstHalfP50MS: &p50}
	s.Latency.P99MS = 3
	if f := s.figures(); f.p99 != 3*time.Millisecond || f.firstP50 == nil || *f.firstP50 != 2*time.Millisecond || f.secondP50 != nil {
		t.Fatalf("figures %+v", f)
	}
}

// TestPublisherRateWarnings: 1M deliveries/s in a room of 1000 is 1000
// messages/s, 8/s for each of 125 publishers: under chatd's 20/s; a
// single publisher at 100k deliveries/s (100/s) is above it.
func TestPublisherRateWarnings(t *testing.T) {
	if w := publisherRateWarnings([]float64{1e6, 1.25e6}, 1000, 125, 20); len(w) != 0 {
		t.Fatalf("warned %v for 8 and 10 messages/s per publisher", w)
	}
	w := publisherRateWarnings([]float64{10e3, 100e3}, 1000, 1, 20)
	if len(w) != 1 || !strings.Contains(w[0], "step 2") || !strings.Contains(w[0], "100.0 messages/s") || !strings.Contains(w[0], "rate_limited") {
		t.Fatalf("warnings %q", w)
	}
	if w := publisherRateWarnings([]float64{100e3}, 1000, 1, 0); len(w) != 0 {
		t.Fatalf("limit 0 warned %v", w)
	}
}

func TestParseStepRule(t *testing.T) {
	for in, want := range map[string]StepRule{"": RuleLegacy, "legacy": RuleLegacy, "sustain": RuleSustain} {
		if r, err := ParseStepRule(in); err != nil || r != want {
			t.Errorf("ParseStepRule(%q) = %q, %v", in, r, err)
		}
	}
	if _, err := ParseStepRule("strict"); err == nil {
		t.Error("ParseStepRule(strict) accepted")
	}
}
