package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlagValueNames checks every flag's usage: a word in backquotes names
// the flag's value in help ("--listen addr"), so a phrase in backquotes
// would print as one ("--workers larder worker").
func TestFlagValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: help shows the value as %q; quote that phrase with \" instead of backquotes", c.CommandPath(), f.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk((&app{}).rootCommand())
}

// TestNegativeKeyArgument checks that a negative number where a command
// takes a key, which the flag parser reads as flags (-1 as -1), is refused
// with a hint that shows how to pass it: after --.
func TestNegativeKeyArgument(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "user_profile", "-1"}, "larder get user_profile -- -1"},
		{[]string{"get", "--json", "user_profile", "42", "-7"}, "larder get --json user_profile 42 -- -7"},
		{[]string{"rank", "home_feed", "-3", "--request", "hour=1"}, "larder rank home_feed --request hour=1 -- -3"},
		{[]string{"get", "user_profile", "-2.5"}, "after --"},
	} {
		r := larderAt(t, t.Context(), t0, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("larder %s: exit %d, stderr %q; want it to say %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	// A flag that is not a number keeps the parser's message alone.
	r := larderAt(t, t.Context(), t0, "get", "-x", "user_profile", "1")
	if r.code == 0 || strings.Contains(r.stderr, " -- ") {
		t.Errorf("larder get -x: exit %d, stderr %q; want the unknown flag without a hint about --", r.code, r.stderr)
	}
}
