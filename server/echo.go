package server

import (
	"strconv"
	"unicode/utf8"
)

// echoRunes is how much of a string from a request an error message
// repeats.
const echoRunes = 100

// echo quotes s, a string from a request, for an error message. It is
// quoted as Go quotes strings, so that control characters and bytes that
// are not UTF-8 come back escaped and the message stays valid UTF-8; past
// echoRunes runes (a byte that is not UTF-8 counts as one), s is cut, and
// "…" and its length in bytes follow the quotes. Every message that repeats
// a name, a key or another string of a request goes through echo, so that a
// megabyte name does not come back as a megabyte message.
func echo(s string) string {
	n := 0
	for i := 0; i < len(s); n++ {
		if n == echoRunes {
			return strconv.Quote(s[:i]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return strconv.Quote(s)
}

// checkName returns what is wrong with name, a name or a reference of a
// request whose longest valid value is max bytes, before it is looked up:
// "" when nothing is. A longer name names nothing, and one that is not
// UTF-8 could not be repeated in a response.
func checkName(name string, max int) string {
	switch {
	case len(name) > max:
		return echo(name) + " is longer than any the project has (at most " + strconv.Itoa(max) + " bytes)"
	case !utf8.ValidString(name):
		return echo(name) + " is not valid UTF-8"
	}
	return ""
}
