package store

import (
	"os"
	"strings"
	"testing"
)

// TestLayoutDocumented checks that docs/architecture.md's storage layout
// names every key the store writes, as the keys type builds them.
func TestLayoutDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(doc), "### Storage layout")
	if !ok {
		t.Fatal("docs/architecture.md has no Storage layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n#")
	k := keys{prefix: "larder:<project>:"}
	const view, gen = "<view>", 7
	withGen := func(key string) string { return strings.Replace(key, ":7", ":<gen>", 1) }
	for _, key := range []string{
		k.live(view), k.seq(view), k.gens(view), k.lease(view), k.fence(view), k.sched(view), k.active(view),
		withGen(k.meta(view, gen)), withGen(k.writeLease(view, gen)), withGen(k.shards(view, gen)),
		withGen(k.dataPrefix(view, gen)) + "<bucket>", k.tiles(view, []byte("<key>")),
		k.views(), k.epoch(), k.channel(), k.runs(view),
		k.pushes(view), k.pushFloors(view), k.pushHold(view), k.readers(view),
	} {
		// A key may be written out whole, or as a suffix after the one
		// before it in the same row ("`...:lease`, `:fence`").
		suffix := key[strings.LastIndex(key, ":"):]
		if !strings.Contains(layout, "`"+key+"`") && !strings.Contains(layout, "`"+suffix+"`") {
			t.Errorf("docs/architecture.md's storage layout does not name %s", key)
		}
	}
}
