package main

import "testing"

// TestHint checks that the commands hints suggest are spelled as the user
// ran larder: "larder" when it came from PATH, the path they typed
// otherwise, as after make demo.
func TestHint(t *testing.T) {
	for _, tt := range []struct{ arg0, want string }{
		{"larder", "larder"},
		{"", "larder"},
		{"./bin/larder", "./bin/larder"},
		{"/usr/local/bin/larder", "/usr/local/bin/larder"},
		{"/tmp/go-build123/b001/exe/larder", "larder"},
		{"/home/a b/bin/larder", "'/home/a b/bin/larder'"},
	} {
		if got := selfCommand(tt.arg0); got != tt.want {
			t.Errorf("selfCommand(%q) = %q, want %q", tt.arg0, got, tt.want)
		}
	}
	text := "Next:\n  larder demo --keep-serving         # then:\n  grpcurl -plaintext ADDR list       # see\n  larder -c x.yaml views  # short\nthe larder binary\n"
	a := &app{self: "./bin/larder"}
	want := "Next:\n  ./bin/larder demo --keep-serving   # then:\n  grpcurl -plaintext ADDR list       # see\n  ./bin/larder -c x.yaml views # short\nthe larder binary\n"
	if got := a.hint(text); got != want {
		t.Errorf("hint with ./bin/larder:\n%s\nwant\n%s", got, want)
	}
	if got := (&app{}).hint(text); got != text {
		t.Errorf("hint of an app run from PATH changed the text:\n%s", got)
	}
}
