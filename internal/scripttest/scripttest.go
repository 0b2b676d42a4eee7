// Package scripttest runs script-driven tests: scenario files under a package's testdata/
// whose cases are commands followed by the output they are expected to produce, in the layout
// of etcd-raft's and CockroachDB's datadriven tests. One runner serves group/, meta/ and later
// replication/, so every package's scripts read the same way and regenerate the same way.
//
// A file is a sequence of cases, each of the form
//
//	command key=val word ...
//	optional input lines
//	----
//	expected output lines
//	<blank line>
//
// Lines starting with '#' and blank lines between cases are comments, kept as they are. Run
// the tests with -rewrite to replace every expected output with what the handler now returns
// (then read the diff). The output of a case cannot hold a blank line, because the blank line
// ends it; a handler that returns one fails the test.
//
// The package only parses, compares and rewrites files; it knows nothing about what the
// commands mean and must not grow features a handler can do itself.
package scripttest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rewrite is registered here, once, so that `go test ./pkg -rewrite` works in every package
// whose tests import the runner.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the script tests in testdata/")

// separator divides a case's command and input from its expected output.
const separator = "----"

// TestData is one case of a script file.
type TestData struct {
	// Pos is "file:line" of the command, for messages.
	Pos string
	// Cmd is the command line's first word.
	Cmd string
	// CmdArgs are the command line's other words, in order.
	CmdArgs []CmdArg
	// Input is the lines between the command and the separator, joined by "\n" ("" for none).
	Input string
	// Expected is the output written in the file.
	Expected string
}

// CmdArg is one word after the command: "key=val", or a lone "key" (Val "" and HasVal false).
// A word is split at its first '=', so a value may hold more of them.
type CmdArg struct {
	Key    string
	Val    string
	HasVal bool
}

// String is the word as written.
func (a CmdArg) String() string {
	if a.HasVal {
		return a.Key + "=" + a.Val
	}
	return a.Key
}

// Arg returns the value of the first argument named key.
func (d *TestData) Arg(key string) (string, bool) {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// Line is the command line as written (words separated by one space).
func (d *TestData) Line() string {
	words := []string{d.Cmd}
	for _, a := range d.CmdArgs {
		words = append(words, a.String())
	}
	return strings.Join(words, " ")
}

// Fatalf fails the test with the case's position and command in front of the message.
func (d *TestData) Fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s: %s: %s", d.Pos, d.Line(), fmt.Sprintf(format, args...))
}

// Walk runs fn as a subtest, named after the file, for every file matching pattern (for
// example "testdata/*.txt"), and fails when there is none: a script directory that went
// missing must not pass silently.
func Walk(t *testing.T, pattern string, fn func(t *testing.T, path string)) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no script matches %s", pattern)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { fn(t, f) })
	}
}

// Run runs the cases of the script file at path in order, giving each to handler and comparing
// what it returns (trailing newlines aside) with the expected output. A mismatch is reported
// and the run goes on, since later cases often explain an earlier difference. With -rewrite the
// file is written back with the outputs the handler returned.
func Run(t *testing.T, path string, handler func(t *testing.T, d *TestData) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, diffs, err := runScript(path, string(data), func(d *TestData) string { return handler(t, d) })
	if err != nil {
		t.Fatal(err)
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, d := range diffs {
		t.Error(d)
	}
}

// block is a run of a script file: a comment or blank line kept verbatim, or a case.
type block struct {
	verbatim string    // a comment or blank line; or a case's command line as written
	c        *TestData // nil for a comment or blank line
}

// parse splits a script into blocks. A case without a separator has an empty expected output
// (the way a new case is written before its first -rewrite).
func parse(path, data string) ([]block, error) {
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	if data == "" {
		lines = nil
	}
	var blocks []block
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			blocks = append(blocks, block{verbatim: line})
			continue
		}
		if line == separator {
			return nil, fmt.Errorf("%s:%d: %q without a command before it", path, i+1, separator)
		}
		d := &TestData{Pos: fmt.Sprintf("%s:%d", path, i+1)}
		words := strings.Fields(line)
		d.Cmd = words[0]
		for _, w := range words[1:] {
			k, v, ok := strings.Cut(w, "=")
			d.CmdArgs = append(d.CmdArgs, CmdArg{Key: k, Val: v, HasVal: ok})
		}
		var input []string
		for i+1 < len(lines) && lines[i+1] != separator && lines[i+1] != "" {
			i++
			input = append(input, lines[i])
		}
		d.Input = strings.Join(input, "\n")
		var want []string
		if i+1 < len(lines) && lines[i+1] == separator {
			for i += 2; i < len(lines) && lines[i] != ""; i++ {
				want = append(want, lines[i])
			}
		} else if i+1 < len(lines) && lines[i+1] == "" {
			i++ // a case not run yet: the blank line after it is its end, as it will be after -rewrite
		}
		// i is on the blank line that ends the case (or past the end): it belongs to the
		// case, and the loop's i++ steps over it.
		d.Expected = strings.Join(want, "\n")
		blocks = append(blocks, block{verbatim: line, c: d})
	}
	return blocks, nil
}

// runScript runs every case of a script through handle and returns the script rewritten with
// the outputs handle gave, and a message for every case whose output differs from the file.
func runScript(path, data string, handle func(d *TestData) string) (string, []string, error) {
	blocks, err := parse(path, data)
	if err != nil {
		return "", nil, err
	}
	var out strings.Builder
	var diffs []string
	for _, b := range blocks {
		if b.c == nil {
			out.WriteString(b.verbatim + "\n")
			continue
		}
		d := b.c
		got := strings.TrimRight(handle(d), "\n")
		if strings.Contains(got, "\n\n") || strings.HasPrefix(got, "\n") {
			return "", nil, fmt.Errorf("%s: %s: the output holds a blank line, which would end the case early:\n%s", d.Pos, d.Line(), got)
		}
		out.WriteString(b.verbatim + "\n")
		if d.Input != "" {
			out.WriteString(d.Input + "\n")
		}
		out.WriteString(separator + "\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
		out.WriteString("\n")
		if got != d.Expected {
			diffs = append(diffs, fmt.Sprintf("%s: %s\ngot:\n%s\nwant:\n%s", d.Pos, d.Line(), got, d.Expected))
		}
	}
	return strings.TrimRight(out.String(), "\n") + "\n", diffs, nil
}
