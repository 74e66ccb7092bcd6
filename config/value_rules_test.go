package config_test

import (
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// rulesLine is the line of kinds (the latest view's source) after which the
// cases add value rules to the view user_profile: their first line is 14.
const rulesLine = 13

func withRules(tb testing.TB, rules string) string {
	tb.Helper()
	return edit(tb, kinds, rulesLine, "    source: users", "    source: users\n"+rules)
}

func TestParseValueRules(t *testing.T) {
	type rules struct {
		max       int
		nonFinite larder.ValuePolicy
		oversize  larder.ValuePolicy
	}
	defaults := rules{larder.DefaultMaxValueBytes, larder.DefaultNonFinite, larder.DefaultOversize}
	tests := []struct {
		name  string
		yaml  string
		want  rules
		other rules // the view user_churn, which sets none
	}{
		{"none", "", defaults, defaults},
		{"bytes", "    max_value_bytes: 1000\n    non_finite: reject\n    oversize: reject",
			rules{1000, larder.PolicyReject, larder.PolicyReject}, defaults},
		{"KiB", "    max_value_bytes: 64KiB\n    non_finite: keep", rules{64 << 10, larder.PolicyKeep, larder.DefaultOversize}, defaults},
		{"MiB", "    max_value_bytes: 1MiB", rules{1 << 20, larder.DefaultNonFinite, larder.DefaultOversize}, defaults},
		{"B", "    max_value_bytes: 512B", rules{512, larder.DefaultNonFinite, larder.DefaultOversize}, defaults},
		{"the largest", "    max_value_bytes: 512MiB", rules{larder.MaxValueBytesLimit, larder.DefaultNonFinite, larder.DefaultOversize}, defaults},
		// YAML reads an unquoted null as no value; it is the null policy.
		{"null unquoted", "    non_finite: null\n    oversize: ~", rules{larder.DefaultMaxValueBytes, larder.PolicyNull, larder.PolicyNull}, defaults},
		{"null quoted", "    non_finite: \"null\"\n    oversize: 'null'", rules{larder.DefaultMaxValueBytes, larder.PolicyNull, larder.PolicyNull}, defaults},
		{"null left empty", "    non_finite:", rules{larder.DefaultMaxValueBytes, larder.PolicyNull, larder.DefaultOversize}, defaults},
		{"merged from an anchor", "    <<: {non_finite: reject, max_value_bytes: 2KiB}",
			rules{2 << 10, larder.PolicyReject, larder.DefaultOversize}, defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := kinds
			if tt.yaml != "" {
				src = withRules(t, tt.yaml)
			}
			p, err := config.Parse("larder.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]rules{"user_profile": tt.want, "user_churn": tt.other} {
				v := p.View(name)
				if got := (rules{v.MaxValueBytes, v.NonFinite, v.Oversize}); got != want {
					t.Errorf("%s: rules = %+v, want %+v", name, got, want)
				}
			}
		})
	}
}

// TestParseValueRulesEveryKind checks that every kind of view takes the
// value rules.
func TestParseValueRulesEveryKind(t *testing.T) {
	src := kinds
	for _, at := range []struct {
		line     int
		old, new string
	}{
		{50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: item_id, score: score, top_k: 50}\n    non_finite: keep\n    oversize: reject"},
		{42, "    batch_size: 256", "    batch_size: 256\n    non_finite: reject"},
		{21, "    schedule: \"@hourly\"", "    schedule: \"@hourly\"\n    max_value_bytes: 100"},
	} {
		src = edit(t, src, at.line, at.old, at.new)
	}
	p, err := config.Parse("larder.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.View("user_activity"); v.MaxValueBytes != 100 {
		t.Errorf("aggregate view: max_value_bytes = %d, want 100", v.MaxValueBytes)
	}
	if v := p.View("user_churn"); v.NonFinite != larder.PolicyReject {
		t.Errorf("prediction view: non_finite = %q, want reject", v.NonFinite)
	}
	if v := p.View("user_recs"); v.NonFinite != larder.PolicyKeep || v.Oversize != larder.PolicyReject {
		t.Errorf("candidates view: non_finite = %q, oversize = %q; want keep, reject", v.NonFinite, v.Oversize)
	}
}

func TestParseValueRulesBad(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole error
	}{
		{"decimal unit", "    max_value_bytes: 64KB",
			`larder.yaml:14:22: views[0].max_value_bytes: invalid size "64KB": write a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB`},
		{"fraction", "    max_value_bytes: 1.5MiB",
			`larder.yaml:14:22: views[0].max_value_bytes: invalid size "1.5MiB": write a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB`},
		{"zero", "    max_value_bytes: 0",
			"larder.yaml:14:22: views[0].max_value_bytes: must be positive, got 0: the most bytes one value may take, such as 65536 or 64KiB"},
		{"zero KiB", "    max_value_bytes: 0KiB",
			`larder.yaml:14:22: views[0].max_value_bytes: invalid size "0KiB": must be positive; write a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB`},
		{"negative", "    max_value_bytes: -1",
			"larder.yaml:14:22: views[0].max_value_bytes: must be positive, got -1: the most bytes one value may take, such as 65536 or 64KiB"},
		{"over Redis's limit", "    max_value_bytes: 1024MiB",
			"larder.yaml:14:22: views[0].max_value_bytes: 1073741824 is more than 536870912 (512 MiB), the largest value Redis stores"},
		{"far too large", "    max_value_bytes: 99999999999MiB",
			`larder.yaml:14:22: views[0].max_value_bytes: invalid size "99999999999MiB": too large; write a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB`},
		{"a list", "    max_value_bytes: [1]",
			"larder.yaml:14:22: views[0].max_value_bytes: want a size such as 65536, 64KiB or 1MiB; got a list"},
		{"unknown non-finite policy", "    non_finite: drop",
			`larder.yaml:14:17: views[0].non_finite: unknown policy "drop" (one of reject, null, keep)`},
		{"non-finite policy as a list", "    non_finite: [reject]",
			"larder.yaml:14:17: views[0].non_finite: want a policy: reject, null or keep; got a list"},
		{"keep oversize", "    oversize: keep",
			"larder.yaml:14:15: views[0].oversize: keep is not an oversize policy (one of reject, null): to keep larger values, raise max_value_bytes"},
		{"unknown oversize policy", "    oversize: truncate",
			`larder.yaml:14:15: views[0].oversize: unknown policy "truncate" (one of reject, null)`},
		{"misspelt field", "    non_finit: reject",
			`larder.yaml:14:5: views[0].non_finit: unknown field "non_finit"; did you mean "non_finite"? (fields of a latest view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, features)`},
		{"two problems", "    max_value_bytes: lots\n    oversize: shrink",
			"larder.yaml:14:22: views[0].max_value_bytes: invalid size \"lots\": write a whole number of bytes, KiB or MiB, such as 65536, 64KiB or 1MiB\n" +
				`larder.yaml:15:15: views[0].oversize: unknown policy "shrink" (one of reject, null)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("larder.yaml", []byte(withRules(t, tt.yaml)))
			problems(t, err)
			if err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%v", err, tt.want)
			}
		})
	}
}
